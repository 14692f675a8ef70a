//! Scenes: the built-in ones and user shaders share one path. Each is a Shadertoy-style fragment
//! shader (`mainImage(out vec4, in vec2)`), wrapped in a prelude that declares iTime, iResolution,
//! iFrame, iTimeDelta, iFrameRate (and iMouse/iDate, left at zero), and an epilogue that flips the
//! picture so the render target's first row is the picture's top row.

use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Context as _;

use crate::exit::{Exit, ExitExt, fail};
use crate::render::egl::gl::{Gl, Pass, Program, Target, Uniform};
use crate::settings::BuiltinScene;

const PRELUDE: &str = include_str!("shaders/prelude.glsl");
const EPILOGUE: &str = include_str!("shaders/epilogue.glsl");

/// The fragment shader source for a scene body; `#line 1` makes the driver's line numbers those of
/// the user's file.
pub fn wrap(body: &str) -> String {
    format!("{PRELUDE}#line 1\n{body}\n{EPILOGUE}")
}

pub fn builtin_source(scene: BuiltinScene) -> &'static str {
    match scene {
        BuiltinScene::Demo => include_str!("shaders/demo.glsl"),
        BuiltinScene::Gradient => include_str!("shaders/gradient.glsl"),
    }
}

/// Turns a multi-line driver log into one line.
pub fn one_line(log: &str) -> String {
    log.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

/// What the renderer draws: a built-in scene (`scene:NAME`) or a user's shader file (`shader:FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SceneSpec {
    Builtin(BuiltinScene),
    Shader(PathBuf),
}

pub struct Scene {
    program: Program,
}

impl Scene {
    pub fn load(gl: &Rc<Gl>, spec: &SceneSpec) -> anyhow::Result<Scene> {
        let (body, name) = match spec {
            SceneSpec::Builtin(s) => (builtin_source(*s).to_string(), format!("built-in scene {s:?}")),
            SceneSpec::Shader(path) => {
                let body = std::fs::read_to_string(path)
                    .with_context(|| format!("--shader {}", path.display()))
                    .exit(Exit::NoInput)?;
                (body, format!("--shader {}", path.display()))
            }
        };
        let program = Program::fullscreen(gl, &wrap(&body))
            .map_err(|e| fail(Exit::BadShader, format!("{name}: {}: {}", e.stage, one_line(&e.log))))?;
        log::info!("scene: {name}");
        Ok(Scene { program })
    }

    pub fn draw(&self, target: &Target, frame: u64, time: f32, fps: u32) -> anyhow::Result<()> {
        let (w, h) = (target.width as f32, target.height as f32);
        Pass {
            program: &self.program,
            target,
            source: None,
            uniforms: &[
                ("iResolution", Uniform::Vec3([w, h, 1.0])),
                ("iTime", Uniform::F32(time)),
                ("iTimeDelta", Uniform::F32(1.0 / fps as f32)),
                ("iFrameRate", Uniform::F32(fps as f32)),
                ("iFrame", Uniform::I32(frame as i32)),
                ("iMouse", Uniform::Vec4([0.0; 4])),
                ("iDate", Uniform::Vec4([0.0; 4])),
            ],
            scissor: None,
        }
        .draw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_source_maps_user_lines() {
        let src = wrap("void mainImage(out vec4 c, in vec2 p) { c = vec4(1.0); }");
        assert!(src.starts_with("#version 300 es"));
        let after = src.split("#line 1\n").nth(1).unwrap();
        assert!(after.starts_with("void mainImage"));
        assert!(src.contains("mainImage(color, vec2(gl_FragCoord.x, iResolution.y - gl_FragCoord.y))"));
    }

    #[test]
    fn logs_become_one_line() {
        assert_eq!(one_line("0:3(1): error: x\n\n0:4(2): error: y\n"), "0:3(1): error: x | 0:4(2): error: y");
    }
}
