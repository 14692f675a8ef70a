//! Scenes: the built-in ones and user shaders share one path. Each is a Shadertoy-style fragment
//! shader (`mainImage(out vec4, in vec2)`), wrapped in a prelude that declares iTime, iResolution,
//! iFrame, iTimeDelta, iFrameRate (and iMouse/iDate, left at zero), and an epilogue that flips the
//! picture so the render target's first row is the picture's top row and, when frames are stamped,
//! draws the frame stamp over it in the same pass.

use std::path::PathBuf;
use std::rc::Rc;

use anyhow::Context as _;

use crate::exit::{Exit, ExitExt, fail};
use crate::render::egl::gl::{Gl, Pass, Program, Target, Uniform};
use crate::settings::BuiltinScene;
use crate::stamp::{self, StampLayout};

const PRELUDE: &str = include_str!("shaders/prelude.glsl");
const STAMP: &str = include_str!("shaders/stamp.glsl");
const EPILOGUE: &str = include_str!("shaders/epilogue.glsl");

/// The fragment shader source for a scene body, with the frame stamp's code when `stamped`; `#line
/// 1` makes the driver's line numbers those of the user's file.
pub fn wrap(body: &str, stamped: bool) -> String {
    let stamp = if stamped { STAMP } else { "" };
    format!("{PRELUDE}#line 1\n{body}\n{stamp}{EPILOGUE}")
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
    /// Where the frame stamp goes, when the program draws one.
    stamp: Option<StampLayout>,
}

impl Scene {
    /// Compiles the scene, with the frame stamp drawn at `stamp` when given.
    pub fn load(gl: &Rc<Gl>, spec: &SceneSpec, stamp: Option<StampLayout>) -> anyhow::Result<Scene> {
        let (body, name) = match spec {
            SceneSpec::Builtin(s) => (builtin_source(*s).to_string(), format!("built-in scene {s:?}")),
            SceneSpec::Shader(path) => {
                let body = std::fs::read_to_string(path)
                    .with_context(|| format!("--shader {}", path.display()))
                    .exit(Exit::NoInput)?;
                (body, format!("--shader {}", path.display()))
            }
        };
        let program = Program::fullscreen(gl, &wrap(&body, stamp.is_some()))
            .map_err(|e| fail(Exit::BadShader, format!("{name}: {}: {}", e.stage, one_line(&e.log))))?;
        log::info!("scene: {name}");
        Ok(Scene { program, stamp })
    }

    /// Where this scene's program draws the frame stamp, if it draws one.
    pub fn stamp(&self) -> Option<StampLayout> {
        self.stamp
    }

    /// Draws frame `frame` (its stamp too, when stamped).
    pub fn draw(&self, target: &Target, frame: u64, time: f32, fps: u32) -> anyhow::Result<()> {
        let (w, h) = (target.width as f32, target.height as f32);
        let number = frame as u32; // the stamp wraps after 2^32 frames (4.5 years at 30 fps)
        let l = self.stamp.unwrap_or(StampLayout { x: 0, y: 0, block: 0 });
        let uniforms = [
            ("iResolution", Uniform::Vec3([w, h, 1.0])),
            ("iTime", Uniform::F32(time)),
            ("iTimeDelta", Uniform::F32(1.0 / fps as f32)),
            ("iFrameRate", Uniform::F32(fps as f32)),
            ("iFrame", Uniform::I32(frame as i32)),
            ("iMouse", Uniform::Vec4([0.0; 4])),
            ("iDate", Uniform::Vec4([0.0; 4])),
            ("agentcast_frame", Uniform::U32(number)),
            ("agentcast_crc", Uniform::U32(u32::from(stamp::crc8(number)))),
            ("agentcast_stamp", Uniform::Vec4([l.x as f32, l.y as f32, l.block as f32, l.width() as f32])),
        ];
        // Without the stamp's code its uniforms are not in the program, and are passed over.
        let uniforms = if self.stamp.is_some() { &uniforms[..] } else { &uniforms[..7] };
        Pass { program: &self.program, target, source: None, uniforms }.draw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_source_maps_user_lines() {
        for stamped in [false, true] {
            let src = wrap("void mainImage(out vec4 c, in vec2 p) { c = vec4(1.0); }", stamped);
            assert!(src.starts_with("#version 300 es"));
            let after = src.split("#line 1\n").nth(1).unwrap();
            assert!(after.starts_with("void mainImage"));
            assert!(src.contains("mainImage(color, vec2(gl_FragCoord.x, iResolution.y - gl_FragCoord.y))"));
            assert_eq!(src.contains("#define AGENTCAST_STAMP"), stamped);
        }
    }

    #[test]
    fn logs_become_one_line() {
        assert_eq!(one_line("0:3(1): error: x\n\n0:4(2): error: y\n"), "0:3(1): error: x | 0:4(2): error: y");
    }
}
