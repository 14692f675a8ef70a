//! Tools that measure a stream from the outside, the way a viewer sees it: an in-process H.264
//! decoder (`decode`), the picture metrics (`metrics`), end-to-end latency by frame stamp
//! (`latency`, behind `agentcast latency`) and the encoder-settings diagnostic (`quality`, behind
//! `agentcast quality`). None of this runs in the producer's frame loop.

pub mod decode;
pub mod latency;
pub mod metrics;
pub mod quality;
