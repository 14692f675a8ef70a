#version 300 es
#extension GL_OES_EGL_image_external_essl3 : require
precision highp float;
// Draws an external texture (an EGL image, e.g. an imported DMA-BUF) into the rectangle u_rect
// (x, y, width, height in target pixels) and black around it. Texel row 0 (the buffer's first row)
// lands on target row u_rect.y, as the renderer's other passes keep the picture's top at row 0.
// Built for render::egl::dmabuf::ExternalBlit.
uniform samplerExternalOES u_src;
uniform vec4 u_rect;
out vec4 o;

void main() {
    vec2 p = (gl_FragCoord.xy - u_rect.xy) / u_rect.zw;
    if (any(lessThan(p, vec2(0.0))) || any(greaterThanEqual(p, vec2(1.0)))) {
        o = vec4(0.0, 0.0, 0.0, 1.0);
    } else {
        o = texture(u_src, p);
    }
}
