//! The source stage: where frames come from. The built-in scenes and `--shader` render through
//! EGL; an agent's own frames arrive on a pipe or file (`raw:`), a Unix socket (`unix:`), a
//! shared-memory ring (`shm:`) or PipeWire, and reach the frame loop through [`live::Latest`].

pub mod live;
