// gradient: smooth gradients only, for quality and banding work. They drift slowly so the encoder
// sees motion, but there are no edges anywhere.

void mainImage(out vec4 fragColor, in vec2 fragCoord) {
    vec2 uv = fragCoord / iResolution.xy;
    float drift = 0.05 * sin(0.15 * iTime);
    vec3 col;
    if (uv.y > 0.5) {
        // Upper half: a dark-to-light grey ramp (the hardest case for banding) over the full range.
        col = vec3(clamp(uv.x + drift, 0.0, 1.0));
    } else {
        // Lower half: slow colour ramps and a soft radial falloff.
        vec2 q = vec2(uv.x, uv.y * 2.0);
        vec3 a = vec3(0.05, 0.10, 0.30);
        vec3 b = vec3(0.95, 0.55, 0.20);
        col = mix(a, b, clamp(q.x + drift, 0.0, 1.0));
        float r = length(q - vec2(0.5 + drift, 0.5));
        col *= 1.0 - 0.6 * smoothstep(0.0, 0.9, r);
    }
    fragColor = vec4(col, 1.0);
}
