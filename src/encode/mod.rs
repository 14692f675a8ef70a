//! The encode stage: choosing a backend (`select`), the one settings table (`settings`), and the
//! GStreamer pipeline appsrc -> [videoconvert] -> queue -> encoder -> h264parse -> appsink
//! (`pipeline`).

pub mod pipeline;
pub mod select;
pub mod settings;
