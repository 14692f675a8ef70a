
void main() {
    // The render target's row 0 is the top row of the picture (that is the order glReadPixels
    // returns and the encoder expects), so Shadertoy's bottom-left fragCoord is flipped here.
    vec4 color = vec4(0.0, 0.0, 0.0, 1.0);
    mainImage(color, vec2(gl_FragCoord.x, iResolution.y - gl_FragCoord.y));
    agentcast_FragColor = vec4(clamp(color.rgb, 0.0, 1.0), 1.0);
}
