//! The shipped default configuration is the documented one: it parses, and every value in it
//! equals the built-in default, so an operator who reads it reads the truth.

use esi_monitor::config::Config;

#[test]
fn shipped_configuration_equals_the_defaults() {
    let text = include_str!("../packaging/config.yaml");
    let shipped = Config::parse(text).expect("packaging/config.yaml parses");
    assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));
}
