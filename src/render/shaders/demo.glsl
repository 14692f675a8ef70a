// demo: moving shapes over a slowly animated full-range gradient (where banding shows).
// Shadertoy conventions: fragCoord has its origin at the bottom left.
//
// Written to be cheap on llvmpipe, where every fragment runs on the CPU: motion uses triangle waves
// instead of sin/cos, and each shape is only evaluated inside its bounding circle.

// 0 -> 1 -> 0 over one period.
float tri(float x) {
    return abs(fract(x) * 2.0 - 1.0);
}

float box(vec2 p, vec2 b) {
    vec2 d = abs(p) - b;
    return length(max(d, 0.0)) + min(max(d.x, d.y), 0.0);
}

// Paints `color` where the signed distance is negative, anti-aliased over about one pixel.
vec3 fill(vec3 col, vec3 color, float d, float px) {
    return mix(col, color, clamp(0.5 - d / px, 0.0, 1.0));
}

void mainImage(out vec4 fragColor, in vec2 fragCoord) {
    vec2 uv = fragCoord / iResolution.xy;
    float aspect = iResolution.x / iResolution.y;
    vec2 p = (uv - 0.5) * vec2(aspect, 1.0);
    float px = 1.0 / iResolution.y;
    float t = iTime;

    // Background: black at the left edge to full brightness at the right, tinted by a hue that
    // drifts slowly from bottom to top. Every 8-bit step of the ramp is on screen.
    float h = fract(0.02 * t + 0.35 * uv.y) * 6.0;
    vec3 hue = clamp(vec3(abs(h - 3.0) - 1.0, 2.0 - abs(h - 2.0), 2.0 - abs(h - 4.0)), 0.0, 1.0);
    vec3 col = uv.x * mix(vec3(1.0), hue, 0.25 + 0.35 * tri(0.03 * t));

    // A disc bouncing around the frame.
    vec2 c1 = (vec2(tri(0.11 * t), tri(0.17 * t + 0.3)) - 0.5) * vec2(aspect - 0.3, 0.7);
    vec2 d1 = p - c1;
    if (dot(d1, d1) < 0.0144) {
        col = fill(col, vec3(0.95, 0.35, 0.15), length(d1) - 0.11, px);
    }

    // A spinning square on a slow horizontal path.
    vec2 c2 = vec2((tri(0.05 * t + 0.5) - 0.5) * (aspect - 0.4), -0.18);
    vec2 d2 = p - c2;
    if (dot(d2, d2) < 0.0196) {
        float a = 0.8 * t;
        vec2 q = mat2(cos(a), -sin(a), sin(a), cos(a)) * d2;
        col = fill(col, vec3(0.15, 0.65, 0.95), box(q, vec2(0.09)), px);
    }

    // A bar sweeping across the lower band, with a soft glow.
    if (abs(p.y + 0.36) < 0.1) {
        float x = (fract(0.12 * t) - 0.5) * (aspect + 0.4);
        float d3 = max(abs(p.x - x) - 0.02, 0.0);
        col += vec3(0.25, 0.9, 0.35) * (1.0 / (1.0 + 2000.0 * d3 * d3));
    }

    // A ring whose radius pulses.
    vec2 d4 = p - vec2(0.32 * aspect, 0.25);
    if (dot(d4, d4) < 0.0169) {
        float r = 0.05 + 0.05 * tri(0.6 * t);
        col = fill(col, vec3(1.0, 0.9, 0.2), abs(length(d4) - r) - 0.012, px);
    }

    fragColor = vec4(clamp(col, 0.0, 1.0), 1.0);
}
