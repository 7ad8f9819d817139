fn main() {
    eprintln!("warren-perf: not built yet (issue 4)");
    std::process::exit(2);
}
