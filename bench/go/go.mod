module testpage.dev/bench/hello

go 1.19
