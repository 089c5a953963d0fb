//! Command-line parsing.

use std::path::PathBuf;

use crate::app::{ScreenshotRequest, StartOptions};

/// Usage text.
pub const USAGE: &str = "\
usage: heapscope [FILE] [--step N] [--screenshot OUT.png] [--light|--dark]

  FILE                a scenario (.ron); without it the bundled default scenario opens
  --step N            stand after N operations
  --screenshot OUT    render one frame to a PNG and exit (needs a window system, e.g. xvfb-run)
  --light, --dark     force the theme
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Print usage.
    Help,
    /// Open the app.
    Gui(StartOptions),
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut options = StartOptions::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--step" => {
                let value = it.next().ok_or("--step needs a number")?;
                let step = value
                    .parse()
                    .map_err(|_| format!("--step: `{value}` is not a step number"))?;
                options.step = Some(step);
            }
            "--screenshot" => {
                let path = it.next().ok_or("--screenshot needs an output path")?;
                options.screenshot = Some(ScreenshotRequest {
                    path: PathBuf::from(path),
                    after_frames: 4,
                });
                options.fresh_settings = true;
            }
            "--light" => options.dark = Some(false),
            "--dark" => options.dark = Some(true),
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            file => {
                if options.file.replace(PathBuf::from(file)).is_some() {
                    return Err("only one FILE can be opened".to_owned());
                }
            }
        }
    }
    Ok(Invocation::Gui(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn parses_file_step_and_screenshot() {
        let Ok(Invocation::Gui(o)) = parse(&args(&[
            "a.ron",
            "--step",
            "3",
            "--screenshot",
            "o.png",
            "--light",
        ])) else {
            panic!("expected gui");
        };
        assert_eq!(o.file, Some(PathBuf::from("a.ron")));
        assert_eq!(o.step, Some(3));
        assert!(o.screenshot.is_some() && o.fresh_settings);
        assert_eq!(o.dark, Some(false));
    }

    #[test]
    fn rejects_bad_arguments_with_a_message() {
        assert!(parse(&args(&["--step", "x"])).unwrap_err().contains("`x`"));
        assert!(parse(&args(&["--bogus"])).unwrap_err().contains("--bogus"));
        assert!(parse(&args(&["a", "b"])).is_err());
    }
}
