//! Who this pod is: its IP, version, names and colour, read once at start-up.
//!
//! The IP is the one the tutorials' page shows: the Downward API's `POD_IP` when the manifest
//! passes it, else the IPv4 address of `INTERFACE` (`eth0`, as the original app read it), else
//! the address of the default route, else the first non-loopback address. A host with no IPv4
//! address at all (IPv6-only) reports its IPv6 address.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use hyper::header::HeaderName;

/// The response header carrying `VERSION`.
pub const X_VERSION: HeaderName = HeaderName::from_static("x-version");
/// The response header carrying the pod name (or hostname).
pub const X_POD: HeaderName = HeaderName::from_static("x-pod");
/// The response header carrying the pod IP.
pub const X_POD_IP: HeaderName = HeaderName::from_static("x-pod-ip");

/// The fixed facts about this process that the page, the headers and `/info` report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodInfo {
    /// The reported pod IP.
    pub ip: IpAddr,
    /// `VERSION`.
    pub version: String,
    /// The kernel's hostname (in Kubernetes, the pod name unless `hostname` is set).
    pub hostname: String,
    /// `POD_NAME` from the Downward API.
    pub pod: Option<String>,
    /// `POD_NAMESPACE` from the Downward API.
    pub namespace: Option<String>,
    /// `NODE_NAME` from the Downward API.
    pub node: Option<String>,
    /// `COLOR`, for blue/green images.
    pub color: Option<String>,
}

impl PodInfo {
    /// The pod's name for the `X-Pod` header and `{pod}`: `POD_NAME`, else the hostname.
    pub(crate) fn pod_name(&self) -> &str {
        self.pod.as_deref().unwrap_or(&self.hostname)
    }
}

/// The `/info` JSON document (also `/` with `Accept: application/json`): the pod's facts, when
/// the process started, and where it is in its lifecycle.
///
/// This crate owns the type; other code reads it from here rather than keeping a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// ip, version, hostname, pod, namespace, node, color.
    #[serde(flatten)]
    pub pod_info: PodInfo,
    /// When the process started, RFC 3339 in UTC.
    pub started_at: String,
    /// `starting`, `serving`, `draining` or `closing`.
    pub state: String,
}

/// The data of every message on `/events` and `/ws` (as JSON): who sent it, and its place in
/// its stream, counted from 1 on each connection.
///
/// This crate owns the type; `probe watch` reads messages with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// `VERSION`.
    pub version: String,
    /// The pod name (or hostname).
    pub pod: String,
    /// 1 for the first message of a connection, then one more for each.
    pub seq: u64,
}

/// Where the reported IP came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpSource {
    /// `POD_IP` was set.
    PodIp,
    /// The named interface had an IPv4 address.
    Interface,
    /// The address the default route leaves from.
    DefaultRoute,
    /// The first non-loopback address found.
    FirstNonLoopback,
    /// No usable address at all: loopback.
    Loopback,
}

/// Finds the IP to report when `POD_IP` is not set; see the module docs for the order.
pub(crate) fn discover_ip(interface: &str) -> (IpAddr, IpSource) {
    let addrs = local_ip_address::list_afinet_netifas().unwrap_or_default();
    if let Some((_, ip)) = addrs
        .iter()
        .find(|(name, ip)| name == interface && ip.is_ipv4())
    {
        return (*ip, IpSource::Interface);
    }
    if let Ok(ip) = local_ip_address::local_ip() {
        return (ip, IpSource::DefaultRoute);
    }
    let non_loopback = |v4: bool| {
        addrs
            .iter()
            .map(|(_, ip)| *ip)
            .find(|ip| !ip.is_loopback() && !ip.is_unspecified() && ip.is_ipv4() == v4)
    };
    if let Some(ip) = non_loopback(true).or_else(|| non_loopback(false)) {
        return (ip, IpSource::FirstNonLoopback);
    }
    (IpAddr::V4(Ipv4Addr::LOCALHOST), IpSource::Loopback)
}

/// The kernel's hostname, read from procfs so it works in a FROM scratch image without libc
/// calls; falls back to `HOSTNAME` (set by Docker and the kubelet), then `localhost`.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_name_falls_back_to_hostname() {
        let mut pod = PodInfo {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            version: "1".into(),
            hostname: "h".into(),
            pod: None,
            namespace: None,
            node: None,
            color: None,
        };
        assert_eq!(pod.pod_name(), "h");
        pod.pod = Some("p".into());
        assert_eq!(pod.pod_name(), "p");
    }

    #[test]
    fn discovery_never_fails() {
        let (ip, source) = discover_ip("no-such-interface-0");
        assert_ne!(source, IpSource::Interface);
        assert!(!ip.is_unspecified());
    }
}
