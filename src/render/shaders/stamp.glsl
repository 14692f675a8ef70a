#version 300 es
precision highp float;
precision highp int;
// Draws the frame stamp (see src/stamp.rs for the layout); a scissor limits it to its row.
// Target rows are picture rows from the top, so gl_FragCoord.x is the picture column.
uniform uint u_frame;
uniform uint u_crc;
uniform float u_x;
uniform float u_block;
out vec4 o;

void main() {
    int i = int(floor((gl_FragCoord.x - u_x) / u_block));
    bool white;
    if (i <= 0) {
        white = true;
    } else if (i == 1) {
        white = false;
    } else if (i < 34) {
        white = ((u_frame >> uint(33 - i)) & 1u) == 1u;
    } else {
        white = ((u_crc >> uint(41 - i)) & 1u) == 1u;
    }
    o = vec4(vec3(white ? 1.0 : 0.0), 1.0);
}
