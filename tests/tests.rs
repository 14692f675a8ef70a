//! Integration tests: run the real binary (Mesa llvmpipe renders where there is no GPU) and check
//! its bytes with real decoders. One module per topic; the helpers they share are in `util`.

mod bad_input;
mod check_command;
mod cli;
mod deploy;
mod encoders;
mod fleet;
mod fuzz;
mod go2rtc_config;
mod go2rtc_e2e;
mod kill_matrix;
mod leases;
mod lifecycle;
mod measure;
mod mpegts;
mod outputs;
mod pipewire;
mod shm;
mod sources;
mod startup;
mod stream_basics;
mod user_shader;
mod util;
mod zero_copy;
