//! `wechat-identity`: the binary. Everything it does is in `server::cli`.

fn main() -> std::process::ExitCode {
    server::cli::main()
}
