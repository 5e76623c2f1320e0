//! The `ringsgi` binary: parse the configuration, register the built-in apps, run the server.

mod apps;

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match ringsgi::config::load_from_args(std::env::args_os()) {
        Ok(c) => c,
        Err(e) => e.print_and_exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RINGSGI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    #[allow(unused_mut)]
    let mut apps = apps::builtin(&config);
    #[cfg(feature = "python")]
    {
        if config.python.pyrun.is_some() {
            return ExitCode::from(u8::try_from(ringsgi::python::pyrun(&config)).unwrap_or(1));
        }
        ringsgi::python::register(&config, &mut apps);
    }
    #[cfg(not(feature = "python"))]
    if config.python.pyrun.is_some()
        || config
            .mounts
            .iter()
            .any(|m| ringsgi::config::raw::python_app(&m.app).is_some())
    {
        eprintln!("ringsgi: this binary was built without Python: build with --features python");
        return ExitCode::from(2);
    }
    match ringsgi::server::run(&config, &apps) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("ringsgi: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("ringsgi: {e}");
            ExitCode::FAILURE
        }
    }
}
