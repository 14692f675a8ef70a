// demo: moving shapes over a slowly animated full-range gradient (where banding shows).
// Shadertoy conventions: fragCoord has its origin at the bottom left.

vec3 hsv2rgb(vec3 c) {
    vec3 p = abs(fract(c.xxx + vec3(0.0, 2.0 / 3.0, 1.0 / 3.0)) * 6.0 - 3.0);
    return c.z * mix(vec3(1.0), clamp(p - 1.0, 0.0, 1.0), c.y);
}

float box(vec2 p, vec2 b) {
    vec2 d = abs(p) - b;
    return length(max(d, 0.0)) + min(max(d.x, d.y), 0.0);
}

mat2 rot(float a) {
    float c = cos(a), s = sin(a);
    return mat2(c, -s, s, c);
}

void mainImage(out vec4 fragColor, in vec2 fragCoord) {
    vec2 uv = fragCoord / iResolution.xy;
    float aspect = iResolution.x / iResolution.y;
    vec2 p = (uv - 0.5) * vec2(aspect, 1.0);

    // Background: black at the left edge to full brightness at the right, tinted by a hue that
    // drifts slowly from bottom to top. Every 8-bit step of the ramp is on screen.
    float hue = fract(0.02 * iTime + 0.35 * uv.y);
    vec3 tint = hsv2rgb(vec3(hue, 0.55, 1.0));
    vec3 col = mix(vec3(uv.x), tint * uv.x, 0.35 + 0.3 * sin(0.25 * iTime));

    // A disc on a Lissajous path.
    vec2 c1 = vec2(0.55 * aspect * 0.5 * sin(0.9 * iTime), 0.3 * sin(1.3 * iTime + 0.5));
    float d1 = length(p - c1) - 0.11;
    col = mix(col, vec3(0.95, 0.35, 0.15), smoothstep(0.003, -0.003, d1));

    // A spinning square.
    vec2 q = rot(0.8 * iTime) * (p - vec2(-0.45 * aspect * 0.5, -0.15));
    float d2 = box(q, vec2(0.09));
    col = mix(col, vec3(0.15, 0.65, 0.95), smoothstep(0.003, -0.003, d2));

    // A bar sweeping across, with a soft glow.
    float x = fract(0.12 * iTime) * (aspect + 0.4) - 0.5 * aspect - 0.2;
    float d3 = abs(p.x - x) - 0.02;
    col += vec3(0.25, 0.9, 0.35) * exp(-40.0 * max(d3, 0.0)) * step(abs(p.y + 0.33), 0.12);

    // A ring that pulses.
    float r = 0.06 + 0.03 * sin(3.0 * iTime);
    float d4 = abs(length(p - vec2(0.35 * aspect, 0.25)) - r) - 0.012;
    col = mix(col, vec3(1.0, 0.9, 0.2), smoothstep(0.003, -0.003, d4));

    fragColor = vec4(clamp(col, 0.0, 1.0), 1.0);
}
