//! The `package-indexer` binary: the server and its operator tools, all in
//! the library's [`package_indexer::main`].

fn main() -> std::process::ExitCode {
    package_indexer::main()
}
