//! Start-up shared by the examples: ringsgi's own command line and config, logging as the
//! `ringsgi` binary does it (`--logto`, `RINGSGI_LOG`), and the example's app served at "/"
//! unless `--app` picks another.

use std::ffi::OsString;

/// Run the server with `apps` until it is stopped; `default_app` is served at "/".
pub(crate) fn serve(default_app: &str, apps: ringsgi::Apps) -> ! {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if !args.iter().any(|a| a == "--app") {
        args.extend(["--app".into(), default_app.into()]);
    }
    let config = ringsgi::config::load_from_args(args).unwrap_or_else(|e| e.print_and_exit());
    if let Err(e) =
        ringsgi::logsink::init(config.logto.as_deref(), config.touch_logreopen.as_deref())
    {
        eprintln!("{default_app}: {e}");
        std::process::exit(1);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RINGSGI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(false)
        .with_writer(ringsgi::logsink::LineWriter::default)
        .init();
    std::process::exit(ringsgi::server::run(&config, &apps).unwrap_or_else(|e| {
        eprintln!("{default_app}: {e}");
        1
    }))
}
