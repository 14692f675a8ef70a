//! Safe wrappers over the few OpenGL ES 3 objects the renderer uses: shader programs, RGBA8 render
//! targets (texture + framebuffer), external textures bound to EGL images (`GL_TEXTURE_EXTERNAL_OES`),
//! full-screen draws, and pixel-pack buffers with fences for asynchronous readback. Every object
//! releases itself in `Drop`.
//!
//! Soundness rests on one invariant: a [`Gl`] exists only inside an [`super::Context`] that made
//! its context current on this thread and keeps it current for its whole life, and `Gl` is neither
//! `Send` nor `Sync` (it holds an `Rc`-shared glow context), so GL is only called on that thread
//! while the context is current. Objects hold an `Rc<Gl>`; the renderer drops them before the
//! context.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use glow::HasContext;

/// The GL function table of the current context.
pub struct Gl {
    gl: glow::Context,
    /// A vertex array object bound once: ES 3 draws without attributes still want one bound on
    /// some drivers. Released by the context before it is destroyed.
    vao: Cell<Option<glow::VertexArray>>,
}

impl Gl {
    pub(super) fn new(gl: glow::Context) -> Gl {
        // SAFETY: called by Context::new right after making the context current on this thread.
        let vao = unsafe { gl.create_vertex_array() }.ok();
        // SAFETY: as above; binding a fresh VAO (or none) is always valid.
        unsafe { gl.bind_vertex_array(vao) };
        Gl { gl, vao: Cell::new(vao) }
    }

    /// Deletes the context's own objects; called by `Context::drop` while still current.
    pub(super) fn release(&self) {
        if let Some(vao) = self.vao.take() {
            // SAFETY: the VAO was created by this context, which is still current (Context::drop
            // calls this before un-currenting it).
            unsafe {
                self.gl.bind_vertex_array(None);
                self.gl.delete_vertex_array(vao);
            }
        }
    }

    fn string(&self, name: u32) -> String {
        // SAFETY: RENDERER/VERSION/VENDOR are valid glGetString names; context current (module docs).
        unsafe { self.gl.get_parameter_string(name) }
    }

    pub fn renderer(&self) -> String {
        self.string(glow::RENDERER)
    }

    pub fn version(&self) -> String {
        self.string(glow::VERSION)
    }

    pub fn vendor(&self) -> String {
        self.string(glow::VENDOR)
    }

    /// Fails with the GL error name if an earlier call raised one.
    pub fn check(&self, what: &str) -> anyhow::Result<()> {
        // SAFETY: glGetError has no preconditions beyond a current context (module docs).
        let err = unsafe { self.gl.get_error() };
        if err == glow::NO_ERROR {
            return Ok(());
        }
        let name = match err {
            glow::INVALID_ENUM => "GL_INVALID_ENUM",
            glow::INVALID_VALUE => "GL_INVALID_VALUE",
            glow::INVALID_OPERATION => "GL_INVALID_OPERATION",
            glow::INVALID_FRAMEBUFFER_OPERATION => "GL_INVALID_FRAMEBUFFER_OPERATION",
            glow::OUT_OF_MEMORY => "GL_OUT_OF_MEMORY",
            _ => "unknown GL error",
        };
        bail!("{what}: {name} (0x{err:04x})")
    }

    /// Submits queued commands without waiting.
    pub fn flush(&self) {
        // SAFETY: context current (module docs).
        unsafe { self.gl.flush() }
    }

    /// Waits until every queued command has finished.
    pub fn finish(&self) {
        // SAFETY: context current (module docs).
        unsafe { self.gl.finish() }
    }

    /// Whether the context lists this GL extension (`GL_OES_EGL_image_external`, ...).
    pub fn has_extension(&self, name: &str) -> bool {
        self.gl.supported_extensions().contains(name)
    }
}

/// `GL_TEXTURE_EXTERNAL_OES` (GL_OES_EGL_image_external); glow has no constant for it.
pub const TEXTURE_EXTERNAL_OES: u32 = 0x8D65;

/// How a texture is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Linear filtering, for draws that scale the picture.
    Linear,
    /// Nearest texel, for exact copies.
    Nearest,
}

/// A texture on `GL_TEXTURE_EXTERNAL_OES` whose storage is an EGL image (see `super::dmabuf`): the
/// driver samples it in whatever layout the image has (tiled, YUV planes), through a
/// `samplerExternalOES` in the shader. It cannot be a render target.
pub struct ExternalTexture {
    gl: Rc<Gl>,
    raw: glow::Texture,
}

impl ExternalTexture {
    /// Creates the texture, binds it and calls `attach` with its target while it is bound (the
    /// caller points it at an EGL image there with glEGLImageTargetTexture2DOES), sampled as `filter`
    /// says.
    pub(super) fn new(gl: &Rc<Gl>, filter: Filter, attach: impl FnOnce(u32)) -> anyhow::Result<ExternalTexture> {
        let g = &gl.gl;
        let filter = match filter {
            Filter::Linear => glow::LINEAR,
            Filter::Nearest => glow::NEAREST,
        } as i32;
        // SAFETY: context current (module docs); the texture is owned by the returned value (or
        // deleted on the error path); external textures take only NEAREST/LINEAR filters and
        // CLAMP_TO_EDGE, which are what is set.
        unsafe {
            let raw = g.create_texture().map_err(|e| anyhow!("glGenTextures: {e}"))?;
            let texture = ExternalTexture { gl: gl.clone(), raw };
            g.bind_texture(TEXTURE_EXTERNAL_OES, Some(raw));
            g.tex_parameter_i32(TEXTURE_EXTERNAL_OES, glow::TEXTURE_MIN_FILTER, filter);
            g.tex_parameter_i32(TEXTURE_EXTERNAL_OES, glow::TEXTURE_MAG_FILTER, filter);
            g.tex_parameter_i32(TEXTURE_EXTERNAL_OES, glow::TEXTURE_WRAP_S, glow::CLAMP_TO_EDGE as i32);
            g.tex_parameter_i32(TEXTURE_EXTERNAL_OES, glow::TEXTURE_WRAP_T, glow::CLAMP_TO_EDGE as i32);
            attach(TEXTURE_EXTERNAL_OES);
            g.bind_texture(TEXTURE_EXTERNAL_OES, None);
            gl.check("binding an EGL image to a GL_TEXTURE_EXTERNAL_OES texture")?;
            Ok(texture)
        }
    }
}

impl Drop for ExternalTexture {
    fn drop(&mut self) {
        // SAFETY: the texture belongs to this context, still current (module docs).
        unsafe { self.gl.gl.delete_texture(self.raw) };
    }
}

/// What a [`Pass`] samples as texture unit 0: a render target (`sampler2D`) or an external
/// texture (`samplerExternalOES`).
#[derive(Clone, Copy)]
pub enum Sampled<'a> {
    Target(&'a Target),
    External(&'a ExternalTexture),
}

impl<'a> From<&'a Target> for Sampled<'a> {
    fn from(t: &'a Target) -> Sampled<'a> {
        Sampled::Target(t)
    }
}

impl Sampled<'_> {
    fn binding(self) -> (u32, glow::Texture) {
        match self {
            Sampled::Target(t) => (glow::TEXTURE_2D, t.texture),
            Sampled::External(t) => (TEXTURE_EXTERNAL_OES, t.raw),
        }
    }
}

/// Which shader stage failed, with the driver's log.
#[derive(Debug, thiserror::Error)]
#[error("{stage} failed: {}", .log.trim_end())]
pub struct ShaderError {
    pub stage: &'static str,
    pub log: String,
}

/// A uniform value.
#[derive(Debug, Clone, Copy)]
pub enum Uniform {
    F32(f32),
    I32(i32),
    U32(u32),
    Vec2([f32; 2]),
    Vec3([f32; 3]),
    Vec4([f32; 4]),
    IVec2([i32; 2]),
}

/// A linked vertex + fragment program.
pub struct Program {
    gl: Rc<Gl>,
    raw: glow::Program,
}

/// The vertex shader every pass uses: one triangle that covers the viewport.
const FULLSCREEN_VS: &str = "#version 300 es
void main() {
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
";

impl Program {
    /// Compiles a full-screen fragment program; on failure returns the driver's log.
    pub fn fullscreen(gl: &Rc<Gl>, fragment: &str) -> Result<Program, ShaderError> {
        let g = &gl.gl;
        let compile = |kind: u32, src: &str, stage: &'static str| -> Result<glow::Shader, ShaderError> {
            // SAFETY: context current (module docs); the shader is deleted on every path.
            unsafe {
                let sh = g.create_shader(kind).map_err(|log| ShaderError { stage, log })?;
                g.shader_source(sh, src);
                g.compile_shader(sh);
                if g.get_shader_compile_status(sh) {
                    Ok(sh)
                } else {
                    let log = g.get_shader_info_log(sh);
                    g.delete_shader(sh);
                    Err(ShaderError { stage, log })
                }
            }
        };
        let vs = compile(glow::VERTEX_SHADER, FULLSCREEN_VS, "vertex shader compilation")?;
        let fs = match compile(glow::FRAGMENT_SHADER, fragment, "fragment shader compilation") {
            Ok(fs) => fs,
            Err(e) => {
                // SAFETY: vs was created above by this context.
                unsafe { g.delete_shader(vs) };
                return Err(e);
            }
        };
        // SAFETY: context current; vs and fs are valid compiled shaders, detached and deleted here.
        unsafe {
            let raw = g.create_program().map_err(|log| ShaderError { stage: "program creation", log })?;
            g.attach_shader(raw, vs);
            g.attach_shader(raw, fs);
            g.link_program(raw);
            g.detach_shader(raw, vs);
            g.detach_shader(raw, fs);
            g.delete_shader(vs);
            g.delete_shader(fs);
            if !g.get_program_link_status(raw) {
                let log = g.get_program_info_log(raw);
                g.delete_program(raw);
                return Err(ShaderError { stage: "program link", log });
            }
            Ok(Program { gl: gl.clone(), raw })
        }
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program belongs to this context, still current (module docs).
        unsafe { self.gl.gl.delete_program(self.raw) };
    }
}

/// An RGBA8 texture with a framebuffer rendering into it.
pub struct Target {
    gl: Rc<Gl>,
    texture: glow::Texture,
    fbo: glow::Framebuffer,
    pub width: u32,
    pub height: u32,
}

impl Target {
    pub fn new(gl: &Rc<Gl>, width: u32, height: u32) -> anyhow::Result<Target> {
        let g = &gl.gl;
        // SAFETY: context current (module docs); sizes are validated by the caller and checked by
        // GL (errors are read below); objects are owned by the returned Target.
        unsafe {
            let texture = g.create_texture().map_err(|e| anyhow!("glGenTextures: {e}"))?;
            g.bind_texture(glow::TEXTURE_2D, Some(texture));
            g.tex_storage_2d(glow::TEXTURE_2D, 1, glow::RGBA8, width as i32, height as i32);
            g.tex_parameter_i32(glow::TEXTURE_2D, glow::TEXTURE_MIN_FILTER, glow::NEAREST as i32);
            g.tex_parameter_i32(glow::TEXTURE_2D, glow::TEXTURE_MAG_FILTER, glow::NEAREST as i32);
            g.bind_texture(glow::TEXTURE_2D, None);
            let fbo = match g.create_framebuffer() {
                Ok(f) => f,
                Err(e) => {
                    g.delete_texture(texture);
                    bail!("glGenFramebuffers: {e}");
                }
            };
            let target = Target { gl: gl.clone(), texture, fbo, width, height };
            g.bind_framebuffer(glow::FRAMEBUFFER, Some(fbo));
            g.framebuffer_texture_2d(glow::FRAMEBUFFER, glow::COLOR_ATTACHMENT0, glow::TEXTURE_2D, Some(texture), 0);
            let status = g.check_framebuffer_status(glow::FRAMEBUFFER);
            g.bind_framebuffer(glow::FRAMEBUFFER, None);
            gl.check(&format!("creating a {width}x{height} RGBA8 render target"))?;
            if status != glow::FRAMEBUFFER_COMPLETE {
                bail!("{width}x{height} RGBA8 framebuffer is incomplete (status 0x{status:04x})");
            }
            Ok(target)
        }
    }

    /// The GL name of the color texture (for registering it with CUDA).
    pub fn texture_name(&self) -> u32 {
        self.texture.0.get()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SAFETY: both objects belong to this context, still current (module docs).
        unsafe {
            self.gl.gl.delete_framebuffer(self.fbo);
            self.gl.gl.delete_texture(self.texture);
        }
    }
}

/// One full-screen pass: `program` draws into `target` (optionally only inside `scissor`,
/// x/y/width/height in target pixels), reading `source` as texture unit 0 (the sampler uniform
/// named by its first element).
pub struct Pass<'a> {
    pub program: &'a Program,
    pub target: &'a Target,
    pub source: Option<(&'a str, Sampled<'a>)>,
    pub uniforms: &'a [(&'a str, Uniform)],
    pub scissor: Option<[u32; 4]>,
}

impl Pass<'_> {
    pub fn draw(&self) -> anyhow::Result<()> {
        let gl = &self.program.gl;
        let g = &gl.gl;
        // SAFETY: context current (module docs); every object passed belongs to it and outlives
        // this call; uniform locations come from this program; draw_arrays reads no buffers.
        unsafe {
            g.bind_framebuffer(glow::FRAMEBUFFER, Some(self.target.fbo));
            g.viewport(0, 0, self.target.width as i32, self.target.height as i32);
            match self.scissor {
                Some([x, y, w, h]) => {
                    g.enable(glow::SCISSOR_TEST);
                    g.scissor(x as i32, y as i32, w as i32, h as i32);
                }
                None => g.disable(glow::SCISSOR_TEST),
            }
            g.use_program(Some(self.program.raw));
            if let Some((name, src)) = self.source {
                let (kind, texture) = src.binding();
                g.active_texture(glow::TEXTURE0);
                g.bind_texture(kind, Some(texture));
                let loc = g.get_uniform_location(self.program.raw, name);
                g.uniform_1_i32(loc.as_ref(), 0);
            }
            for (name, value) in self.uniforms {
                let Some(loc) = g.get_uniform_location(self.program.raw, name) else {
                    continue; // optimised out by the compiler, or unused by this shader
                };
                let loc = Some(&loc);
                match *value {
                    Uniform::F32(v) => g.uniform_1_f32(loc, v),
                    Uniform::I32(v) => g.uniform_1_i32(loc, v),
                    Uniform::U32(v) => g.uniform_1_u32(loc, v),
                    Uniform::Vec2([a, b]) => g.uniform_2_f32(loc, a, b),
                    Uniform::Vec3([a, b, c]) => g.uniform_3_f32(loc, a, b, c),
                    Uniform::Vec4([a, b, c, d]) => g.uniform_4_f32(loc, a, b, c, d),
                    Uniform::IVec2([a, b]) => g.uniform_2_i32(loc, a, b),
                }
            }
            g.draw_arrays(glow::TRIANGLES, 0, 3);
            if let Some((_, src)) = self.source {
                g.bind_texture(src.binding().0, None);
            }
            g.disable(glow::SCISSOR_TEST);
            g.bind_framebuffer(glow::FRAMEBUFFER, None);
        }
        gl.check("drawing a full-screen pass")
    }
}

/// A ring of pixel-pack buffers: [`Readback::start`] queues glReadPixels of a target into a slot
/// and returns at once; [`Readback::read`] later waits for that slot's fence and hands out the
/// bytes, so the CPU never waits on the frame just drawn.
pub struct Readback {
    gl: Rc<Gl>,
    slots: Vec<Slot>,
    size: usize,
}

struct Slot {
    buffer: glow::Buffer,
    fence: Option<glow::Fence>,
}

impl Readback {
    /// `slots` buffers of `size` bytes each.
    pub fn new(gl: &Rc<Gl>, slots: usize, size: usize) -> anyhow::Result<Readback> {
        let g = &gl.gl;
        let mut ring = Readback { gl: gl.clone(), slots: Vec::with_capacity(slots), size };
        for _ in 0..slots {
            // SAFETY: context current (module docs); the buffer is owned by `ring` from here on.
            unsafe {
                let buffer = g.create_buffer().map_err(|e| anyhow!("glGenBuffers: {e}"))?;
                ring.slots.push(Slot { buffer, fence: None });
                g.bind_buffer(glow::PIXEL_PACK_BUFFER, Some(buffer));
                g.buffer_data_size(glow::PIXEL_PACK_BUFFER, size as i32, glow::STREAM_READ);
                g.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
            }
        }
        gl.check("allocating pixel-pack buffers")?;
        Ok(ring)
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Queues a read of the whole `target` (RGBA8) into `slot`.
    pub fn start(&mut self, slot: usize, target: &Target) -> anyhow::Result<()> {
        let bytes = target.width as usize * target.height as usize * 4;
        if bytes != self.size {
            bail!("readback of {bytes} bytes into {}-byte buffers", self.size);
        }
        let g = &self.gl.gl;
        let s = &mut self.slots[slot];
        // SAFETY: context current (module docs); the PBO holds exactly width*height*4 bytes
        // (checked above), so the read stays in bounds; a slot's old fence is deleted first.
        unsafe {
            if let Some(f) = s.fence.take() {
                g.delete_sync(f);
            }
            g.bind_framebuffer(glow::READ_FRAMEBUFFER, Some(target.fbo));
            g.bind_buffer(glow::PIXEL_PACK_BUFFER, Some(s.buffer));
            g.pixel_store_i32(glow::PACK_ALIGNMENT, 4);
            g.read_pixels(
                0,
                0,
                target.width as i32,
                target.height as i32,
                glow::RGBA,
                glow::UNSIGNED_BYTE,
                glow::PixelPackData::BufferOffset(0),
            );
            g.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
            g.bind_framebuffer(glow::READ_FRAMEBUFFER, None);
            s.fence = Some(g.fence_sync(glow::SYNC_GPU_COMMANDS_COMPLETE, 0).map_err(|e| anyhow!("glFenceSync: {e}"))?);
            g.flush();
        }
        self.gl.check("queueing glReadPixels into a pixel-pack buffer")
    }

    /// Waits at most `timeout` for `slot`'s transfer; whether it finished. The slot stays started:
    /// [`Readback::read`] takes its bytes later.
    pub fn finished_within(&self, slot: usize, timeout: Duration) -> anyhow::Result<bool> {
        let Some(fence) = self.slots[slot].fence else { bail!("readback slot {slot} was never started") };
        let ns = i32::try_from(timeout.as_nanos()).unwrap_or(i32::MAX);
        // SAFETY: context current (module docs); the fence came from glFenceSync on it and stays
        // alive (only `read` and `drop` delete it).
        let status = unsafe { self.gl.gl.client_wait_sync(fence, glow::SYNC_FLUSH_COMMANDS_BIT, ns) };
        match status {
            glow::ALREADY_SIGNALED | glow::CONDITION_SATISFIED => Ok(true),
            glow::TIMEOUT_EXPIRED => Ok(false),
            _ => bail!("glClientWaitSync failed (0x{status:04x})"),
        }
    }

    /// Waits (at most `timeout`) for `slot`'s transfer, then calls `f` with its bytes.
    pub fn read<R>(&mut self, slot: usize, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> anyhow::Result<R> {
        // SAFETY: `map` passes a pointer to `len` mapped, readable bytes that stay mapped, and
        // are not otherwise accessed, for this call; the slice does not outlive it.
        self.map(slot, timeout, glow::MAP_READ_BIT, |ptr, len| f(unsafe { std::slice::from_raw_parts(ptr, len) }))
    }

    /// [`Readback::read`], with the bytes mapped writable too, for `f` to change before it hands
    /// them on.
    pub fn read_writable<R>(
        &mut self,
        slot: usize,
        timeout: Duration,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> anyhow::Result<R> {
        let access = glow::MAP_READ_BIT | glow::MAP_WRITE_BIT;
        // SAFETY: as in `read`, and the mapping is writable (MAP_WRITE_BIT).
        self.map(slot, timeout, access, |ptr, len| f(unsafe { std::slice::from_raw_parts_mut(ptr, len) }))
    }

    /// Waits for `slot`'s transfer, maps its buffer with `access` and calls `f` with the mapping's
    /// address and length; the buffer is unmapped when `f` returns.
    fn map<R>(
        &mut self,
        slot: usize,
        timeout: Duration,
        access: u32,
        f: impl FnOnce(*mut u8, usize) -> R,
    ) -> anyhow::Result<R> {
        let g = &self.gl.gl;
        let s = &mut self.slots[slot];
        let Some(fence) = s.fence.take() else { bail!("readback slot {slot} was never started") };
        let ns = i32::try_from(timeout.as_nanos()).unwrap_or(i32::MAX);
        // SAFETY: context current (module docs); the fence came from glFenceSync on it and is
        // deleted right after the wait.
        let status = unsafe {
            let st = g.client_wait_sync(fence, glow::SYNC_FLUSH_COMMANDS_BIT, ns);
            g.delete_sync(fence);
            st
        };
        match status {
            glow::ALREADY_SIGNALED | glow::CONDITION_SATISFIED => {}
            glow::TIMEOUT_EXPIRED => bail!("GPU readback did not finish within {timeout:?}"),
            _ => bail!("glClientWaitSync failed (0x{status:04x})"),
        }
        // SAFETY: context current; the buffer holds `self.size` bytes and its transfer has
        // completed (fence above). The mapped pointer is valid until glUnmapBuffer, which runs
        // after `f` returns, and nothing else maps or touches this buffer meanwhile.
        unsafe {
            g.bind_buffer(glow::PIXEL_PACK_BUFFER, Some(s.buffer));
            let ptr = g.map_buffer_range(glow::PIXEL_PACK_BUFFER, 0, self.size as i32, access);
            if ptr.is_null() {
                g.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
                self.gl.check("glMapBufferRange")?;
                bail!("glMapBufferRange returned NULL");
            }
            let out = f(ptr, self.size);
            g.unmap_buffer(glow::PIXEL_PACK_BUFFER);
            g.bind_buffer(glow::PIXEL_PACK_BUFFER, None);
            Ok(out)
        }
    }
}

impl Drop for Readback {
    fn drop(&mut self) {
        for s in self.slots.drain(..) {
            // SAFETY: buffers and fences belong to this context, still current (module docs).
            unsafe {
                if let Some(f) = s.fence {
                    self.gl.gl.delete_sync(f);
                }
                self.gl.gl.delete_buffer(s.buffer);
            }
        }
    }
}
