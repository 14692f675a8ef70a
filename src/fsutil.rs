//! File-system helpers the stages share (the bottom layer: it knows no stage).

use std::os::unix::fs::FileTypeExt;

/// What is at a path, in the words an error line uses ("a regular file is at ...").
pub fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}
