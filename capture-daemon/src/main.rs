//! The `ringcap` binary: its command line lives in [`cli`], its work in the library.
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
