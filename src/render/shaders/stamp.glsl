// The frame stamp (see src/stamp.rs for the layout): a row of black and white blocks carrying the
// frame number and its CRC-8. It is not a program of its own: when frames are stamped, scene.rs
// puts it between the scene's body and the epilogue, whose main() draws it over the picture, so
// the first frame compiles one program and one set of draw variants, not two.
// Target rows are picture rows from the top, so gl_FragCoord is (column, row) of the picture.
#define AGENTCAST_STAMP 1
uniform uint agentcast_frame;
uniform uint agentcast_crc;
// The stamp's left edge and top row, the edge of one block, and the stamp's width (pixels).
uniform vec4 agentcast_stamp;

// Whether the fragment at `p` lies in the stamp; if so, `white` is its block's colour.
bool agentcast_in_stamp(vec2 p, out bool white) {
    vec2 q = p - agentcast_stamp.xy;
    white = false;
    if (q.x < 0.0 || q.y < 0.0 || q.x >= agentcast_stamp.w || q.y >= agentcast_stamp.z) {
        return false;
    }
    int i = int(floor(q.x / agentcast_stamp.z));
    if (i <= 0) {
        white = true;
    } else if (i == 1) {
        white = false;
    } else if (i < 34) {
        white = ((agentcast_frame >> uint(33 - i)) & 1u) == 1u;
    } else {
        white = ((agentcast_crc >> uint(41 - i)) & 1u) == 1u;
    }
    return true;
}
