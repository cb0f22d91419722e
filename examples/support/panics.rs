//! The first line of a caught panic's message, for benchmarks that turn a failed agent or
//! thread into an error they report instead of a crash.

pub fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    let text = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into());
    text.lines().next().unwrap_or("").to_string()
}
