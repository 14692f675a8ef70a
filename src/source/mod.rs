//! The source stage: where frames come from.
//!
//! - `scene:demo`, `scene:gradient`, `shader:FILE`: drawn here through EGL ([`crate::render`]).
//! - An agent's own frames, in host memory: `raw:PATH` (stdin, a FIFO or a file), `unix:PATH` (a
//!   socket the agent connects to), `shm:NAME` (a shared-memory ring), `pipewire:TARGET`, or frames
//!   pushed by a library user ([`SourceSpec::Push`], the Python package). A receiving thread hands
//!   them to the frame loop through [`live::Latest`], where the newest frame wins.

pub mod feed;
pub mod live;
pub mod pipewire;
pub mod raw;
pub mod shm;
pub mod unix;

use std::fmt;
use std::path::PathBuf;

use crate::settings::BuiltinScene;

/// Where frames come from (`--source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A built-in scene (`scene:demo`, `scene:gradient`; `--scene`).
    Scene(BuiltinScene),
    /// A Shadertoy-style fragment shader (`shader:FILE`; `--shader`).
    Shader(PathBuf),
    /// Raw frames from a pipe, FIFO or file (`raw:-` is standard input).
    Raw(PathBuf),
    /// Raw frames from one agent connected to a Unix socket that agentcast listens on.
    Unix(PathBuf),
    /// A shared-memory latest-frame ring (`/dev/shm/NAME`).
    Shm(String),
    /// A PipeWire video node (name, serial or id).
    Pipewire(String),
    /// Frames pushed through the library ([`crate::stream::Handle::push`]); not a CLI value.
    Push,
}

impl SourceSpec {
    /// Parses a `--source` value; the error names the accepted forms.
    pub fn parse(s: &str) -> Result<SourceSpec, String> {
        let forms = "scene:demo, scene:gradient, shader:FILE, raw:PATH (raw:- for stdin), unix:PATH, shm:NAME or pipewire:TARGET";
        let (kind, rest) = s.split_once(':').ok_or_else(|| format!("'{s}' is not one of {forms}"))?;
        let need = |what: &str| -> Result<(), String> {
            if rest.is_empty() { Err(format!("{kind}: needs {what}, e.g. {kind}:{}", example(kind))) } else { Ok(()) }
        };
        Ok(match kind {
            "scene" => match rest {
                "demo" => SourceSpec::Scene(BuiltinScene::Demo),
                "gradient" => SourceSpec::Scene(BuiltinScene::Gradient),
                _ => return Err(format!("scene:{rest} is not a built-in scene (demo or gradient)")),
            },
            "shader" => {
                need("a file")?;
                SourceSpec::Shader(rest.into())
            }
            "raw" => {
                need("a path")?;
                SourceSpec::Raw(rest.into())
            }
            "unix" => {
                need("a socket path")?;
                SourceSpec::Unix(rest.into())
            }
            "shm" => {
                need("a name")?;
                SourceSpec::Shm(rest.into())
            }
            "pipewire" => {
                need("a node name, serial or id")?;
                SourceSpec::Pipewire(rest.into())
            }
            _ => return Err(format!("'{s}' is not one of {forms}")),
        })
    }

    /// Frames come from the agent (host memory), not from our own renderer.
    pub fn is_external(&self) -> bool {
        !matches!(self, SourceSpec::Scene(_) | SourceSpec::Shader(_))
    }
}

fn example(kind: &str) -> &'static str {
    match kind {
        "shader" => "shader:plasma.glsl",
        "raw" => "raw:- or raw:/run/agent/frames.fifo",
        "unix" => "unix:/run/agentcast/agent_01.sock",
        "shm" => "shm:agent_01",
        _ => "pipewire:gamescope",
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Scene(scene) => write!(f, "scene:{}", scene.name()),
            SourceSpec::Shader(p) => write!(f, "shader:{}", p.display()),
            SourceSpec::Raw(p) => write!(f, "raw:{}", p.display()),
            SourceSpec::Unix(p) => write!(f, "unix:{}", p.display()),
            SourceSpec::Shm(n) => write!(f, "shm:{n}"),
            SourceSpec::Pipewire(t) => write!(f, "pipewire:{t}"),
            SourceSpec::Push => write!(f, "push"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "scene:demo",
            "scene:gradient",
            "shader:x.glsl",
            "raw:-",
            "raw:/tmp/f.fifo",
            "unix:/tmp/a.sock",
            "shm:agent_01",
            "pipewire:gamescope",
        ] {
            assert_eq!(SourceSpec::parse(s).unwrap().to_string(), s);
        }
        assert!(SourceSpec::parse("raw:-").unwrap().is_external());
        assert!(!SourceSpec::parse("shader:x").unwrap().is_external());
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        assert!(SourceSpec::parse("webcam").unwrap_err().contains("raw:PATH"));
        assert!(SourceSpec::parse("scene:cube").unwrap_err().contains("demo or gradient"));
        assert!(SourceSpec::parse("raw:").unwrap_err().starts_with("raw: needs a path"));
        assert!(SourceSpec::parse("http://x").unwrap_err().contains("is not one of"));
    }
}
