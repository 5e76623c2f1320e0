//! Start-up shared by the examples: ringsgi's own command line and config, logging (to stderr,
//! as the `ringsgi` binary logs), and the example's app served at "/" unless `--app` picks
//! another.

use std::ffi::OsString;

/// Run the server with `apps` until it is stopped; `default_app` is served at "/".
pub(crate) fn serve(default_app: &str, apps: ringsgi::Apps) -> ! {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if !args.iter().any(|a| a == "--app") {
        args.extend(["--app".into(), default_app.into()]);
    }
    let config = ringsgi::config::load_from_args(args).unwrap_or_else(|e| e.print_and_exit());
    tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(ringsgi::server::run(&config, &apps).unwrap_or_else(|e| {
        eprintln!("{default_app}: {e}");
        1
    }))
}
