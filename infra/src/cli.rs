//! Command-line options of the `local-stack` binary (a module of the binary,
//! not of the `infra` library): parsed by a pure function so that every
//! refusal is tested.

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_META_PORT: u16 = 8090;

pub const USAGE: &str = "\
Usage: scripts/local-stack [--port N] [--meta-port N] [--allow-origin ORIGIN]...

Runs the whole service on this machine: moto (DynamoDB, KMS, Secrets
Manager), the emulated Meta, and a gateway with the API and a demo page.
Everything listens on 127.0.0.1 only; data lives in moto's memory and is
gone when the stack stops.

Options:
  --port N        the gateway (API and demo page at /app/); default 8080
  --meta-port N   the emulated Meta (consent pages, Graph API); default 8090
  --allow-origin ORIGIN
                  a frontend origin (http://localhost:3000) the gateway's CORS
                  allows besides its own, as AllowedOrigins does in AWS;
                  repeatable
  --check-args    only check the options, then exit
  -h, --help      print this help

See docs/local-stack.md.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub port: u16,
    pub meta_port: u16,
    /// Stop after checking the options (the script calls this first).
    pub check_only: bool,
    /// Frontend origins CORS allows besides the gateway's own.
    pub allow_origins: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after the program name. `Err` is the sentence to
/// print (followed by a hint to `--help`).
pub fn parse<I, S>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut opts = Options {
        port: DEFAULT_PORT,
        meta_port: DEFAULT_META_PORT,
        check_only: false,
        allow_origins: vec![],
    };
    let mut args = args.into_iter().map(|a| a.as_ref().to_string());
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--check-args" if inline.is_none() => opts.check_only = true,
            "--allow-origin" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .filter(|v| !v.starts_with("--"))
                        .ok_or_else(|| format!("{name} needs a value: {name} ORIGIN"))?,
                };
                opts.allow_origins.push(origin_value(&value)?);
            }
            "--port" | "--meta-port" => {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .filter(|v| !v.starts_with("--"))
                        .ok_or_else(|| format!("{name} needs a value: {name} N"))?,
                };
                let port = port_value(&name, &value)?;
                if name == "--port" {
                    opts.port = port;
                } else {
                    opts.meta_port = port;
                }
            }
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    if opts.port == opts.meta_port {
        return Err(format!(
            "--port and --meta-port are both {}: they must differ",
            opts.port
        ));
    }
    Ok(Command::Run(opts))
}

/// An origin as a browser sends it: `scheme://host[:port]`, nothing after.
fn origin_value(value: &str) -> Result<String, String> {
    let refused =
        || format!("--allow-origin {value:?} is not an origin: give http(s)://host[:port]");
    let url = url::Url::parse(value).map_err(|_| refused())?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !["http", "https"].contains(&url.scheme()) || !bare || !url.username().is_empty() {
        return Err(refused());
    }
    Ok(url.origin().ascii_serialization())
}

fn port_value(name: &str, value: &str) -> Result<u16, String> {
    match value.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!(
            "{name} {value:?} is not a port: give a number from 1 to 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Command::Run(o)) => o,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn refused(args: &[&str]) -> String {
        match parse(args) {
            Err(e) => e,
            other => panic!("{args:?} was accepted: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(
            run(&[]),
            Options {
                port: 8080,
                meta_port: 8090,
                check_only: false,
                allow_origins: vec![],
            }
        );
        let o = run(&[
            "--allow-origin",
            "http://localhost:3000",
            "--allow-origin=https://App.example.com/",
        ]);
        assert_eq!(
            o.allow_origins,
            ["http://localhost:3000", "https://app.example.com"]
        );
        let o = run(&["--port", "9000", "--meta-port=9001", "--check-args"]);
        assert_eq!((o.port, o.meta_port, o.check_only), (9000, 9001, true));
        assert_eq!(run(&["--port=1"]).port, 1);
        assert_eq!(run(&["--meta-port", "65535"]).meta_port, 65535);
    }

    #[test]
    fn help() {
        assert_eq!(parse(["--help"]), Ok(Command::Help));
        assert_eq!(parse(["--port", "1", "-h"]), Ok(Command::Help));
        assert!(USAGE.contains("--port N") && USAGE.contains("--meta-port N"));
    }

    #[test]
    fn bad_values_are_refused_with_the_option_named() {
        for (args, says) in [
            (&["--port", "abc"][..], "--port \"abc\" is not a port"),
            (&["--port", "70000"], "--port \"70000\" is not a port"),
            (&["--port", "0"], "is not a port"),
            (&["--port", "-1"], "--port \"-1\" is not a port"),
            (&["--port=-1"], "is not a port"),
            (&["--port="], "is not a port"),
            (
                &["--meta-port", "8o90"],
                "--meta-port \"8o90\" is not a port",
            ),
            (&["--port"], "--port needs a value"),
            (&["--port", "--meta-port", "1"], "--port needs a value"),
            (&["--meta-port"], "--meta-port needs a value"),
            (&["--prot", "1"], "unknown option \"--prot\""),
            (&["8080"], "unknown option \"8080\""),
            (&["--check-args=yes"], "unknown option"),
            (&["--allow-origin"], "--allow-origin needs a value"),
            (&["--allow-origin", "localhost:3000"], "is not an origin"),
            (
                &["--allow-origin", "http://a.example/app"],
                "is not an origin",
            ),
            (&["--allow-origin", "ftp://a.example"], "is not an origin"),
            (&["--port", "8090"], "must differ"),
        ] {
            let e = refused(args);
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
