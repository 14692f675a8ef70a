#version 300 es
precision highp float;
precision highp int;
// Packs the RGBA picture into 8-bit I420 or NV12, BT.709 limited range, four bytes per output texel.
// The output target is (width / 4) x (height * 3 / 2) RGBA8: read back, it is exactly the planar
// buffer GStreamer expects (Y plane, then U and V planes or the interleaved UV plane).
uniform sampler2D u_src;
uniform int u_nv12;
uniform ivec2 u_size;
out vec4 o;

const vec3 KY = vec3(0.2126, 0.7152, 0.0722);

float luma(ivec2 p) {
    return (16.0 + 219.0 * dot(KY, texelFetch(u_src, p, 0).rgb)) / 255.0;
}

// Chroma for the 2x2 block whose top-left pixel is 2 * c.
vec2 chroma(ivec2 c) {
    ivec2 p = c * 2;
    vec3 rgb = 0.25 * (texelFetch(u_src, p, 0).rgb + texelFetch(u_src, p + ivec2(1, 0), 0).rgb
                     + texelFetch(u_src, p + ivec2(0, 1), 0).rgb + texelFetch(u_src, p + ivec2(1, 1), 0).rgb);
    float y = dot(KY, rgb);
    vec2 uv = vec2((rgb.b - y) / 1.8556, (rgb.r - y) / 1.5748);
    return (128.0 + 224.0 * uv) / 255.0;
}

void main() {
    ivec2 t = ivec2(gl_FragCoord.xy);
    int w = u_size.x;
    int h = u_size.y;
    if (t.y < h) {
        int x = t.x * 4;
        o = vec4(luma(ivec2(x, t.y)), luma(ivec2(x + 1, t.y)), luma(ivec2(x + 2, t.y)), luma(ivec2(x + 3, t.y)));
        return;
    }
    int r = t.y - h;
    if (u_nv12 == 1) {
        // Row r of the interleaved plane holds U0 V0 U1 V1 ...; one texel is two chroma pairs.
        o = vec4(chroma(ivec2(2 * t.x, r)), chroma(ivec2(2 * t.x + 1, r)));
        return;
    }
    // I420: the U plane ((w/2) x (h/2) bytes) then the V plane, laid out in rows of w bytes.
    int cw = w / 2;
    int off = r * w + t.x * 4;
    int plane = off >= cw * (h / 2) ? 1 : 0;
    off -= plane * cw * (h / 2);
    int cy = off / cw;
    int cx = off - cy * cw;
    vec4 v;
    for (int k = 0; k < 4; k++) {
        vec2 c = chroma(ivec2(cx + k, cy));
        v[k] = plane == 0 ? c.x : c.y;
    }
    o = v;
}
