//! `agentcast go2rtc-config`: every mode's config parses back and listens on loopback, arguments
//! are quoted the way go2rtc splits them, and the checked-in examples match the generator.

use crate::cli::assert_usage_error;
use crate::util::*;

/// The checked-in examples and the arguments that generate them.
const GO2RTC_EXAMPLES: [(&str, &[&str]); 4] = [
    ("go2rtc/exec.yaml", &["go2rtc-config", "--agents", "4", "--", "--fps", "30"]),
    ("go2rtc/fifo.yaml", &["go2rtc-config", "--mode", "fifo", "--agents", "4"]),
    ("go2rtc/tcp.yaml", &["go2rtc-config", "--mode", "tcp", "--agents", "4"]),
    ("go2rtc/rtsp.yaml", &["go2rtc-config", "--mode", "rtsp", "--agents", "4", "--", "--fps", "30"]),
];

fn yaml(text: &str) -> yaml_rust2::Yaml {
    let mut docs = yaml_rust2::YamlLoader::load_from_str(text).expect("the config is valid YAML");
    docs.remove(0)
}

#[test]
fn go2rtc_configs_parse_back_for_every_mode_and_listen_on_loopback() {
    for (_, args) in GO2RTC_EXAMPLES {
        let out = run(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc = yaml(&String::from_utf8_lossy(&out.stdout));
        for module in ["api", "rtsp", "webrtc"] {
            let listen = doc[module]["listen"].as_str().unwrap();
            assert!(listen.starts_with("127.0.0.1:"), "{module} listens on {listen}");
        }
        assert!(doc["webrtc"]["ice_servers"].as_vec().unwrap().is_empty());
        let streams = doc["streams"].as_hash().unwrap();
        assert_eq!(streams.len(), 4);
        let first = doc["streams"]["agent_01"].as_str().unwrap();
        match args[2] {
            "fifo" => {
                assert_eq!(first, "exec:/usr/bin/cat /run/agentcast/agent_01.h264#killsignal=15#killtimeout=2");
                assert_eq!(doc["exec"]["allow_paths"][0].as_str(), Some("/usr/bin/cat"));
            }
            "tcp" => assert_eq!(first, "tcp://127.0.0.1:9001"),
            "rtsp" => {
                assert_eq!(
                    first,
                    "exec:/usr/local/bin/agentcast --output {output} --stream agent_01 --fps 30#killsignal=15#killtimeout=5"
                );
                assert_eq!(doc["exec"]["allow_paths"][0].as_str(), Some("/usr/local/bin/agentcast"));
            }
            _ => {
                assert_eq!(
                    first,
                    "exec:/usr/local/bin/agentcast --stream agent_01 --mux mpegts --fps 30#killsignal=15#killtimeout=5"
                );
                assert_eq!(doc["exec"]["allow_paths"][0].as_str(), Some("/usr/local/bin/agentcast"));
            }
        }
    }
}

#[test]
fn go2rtc_config_quotes_arguments_and_refuses_hash() {
    let out = run(&["go2rtc-config", "--", "--shader", "/my scenes/a.glsl"]);
    let doc = yaml(&String::from_utf8_lossy(&out.stdout));
    let line = doc["streams"]["agent_01"].as_str().unwrap();
    let command = line.strip_prefix("exec:").unwrap().split('#').next().unwrap();
    assert_eq!(
        agentcast::go2rtc::split_like_go2rtc(command),
        ["/usr/local/bin/agentcast", "--stream", "agent_01", "--mux", "mpegts", "--shader", "/my scenes/a.glsl"]
    );
    assert_usage_error(&run(&["go2rtc-config", "--", "--shader", "a#b.glsl"]), 2, "contains '#'");
    let out = run(&["go2rtc-config", "--listen", "0.0.0.0", "--name", "cam-1"]);
    let doc = yaml(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(doc["api"]["listen"].as_str(), Some("0.0.0.0:1984"));
    assert!(doc["streams"]["cam-1"].as_str().is_some());
}

#[test]
fn go2rtc_examples_are_in_sync_with_the_generator() {
    let pull: (&str, &[&str]) = ("go2rtc/pull.yaml", &["go2rtc-config", "--mode", "pull", "--", "--fps", "30"]);
    for (file, args) in GO2RTC_EXAMPLES.into_iter().chain([pull]) {
        let out = run(args);
        let want = String::from_utf8(out.stdout).unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "{file} is out of date; regenerate it with: agentcast {} > {file}", args.join(" "));
    }
}
