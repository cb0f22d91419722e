//! Device addresses of the recordings (10.x, never a target here) mapped onto loopback:
//! 10.a.b.c becomes 127.a.b.c, so every recorded device has its own loopback address and
//! no probe can leave the machine.

/// Rewrites every 10.a.b.c address in `text` to 127.a.b.c.
pub fn to_loopback(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = i == 0 || !(bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'.');
        if starts_number && text[i..].starts_with("10.") && is_ipv4_rest(&text[i + 3..]) {
            out.push_str("127.");
            i += 3;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// True when `rest` starts with `b.c.d` (three dot-separated numbers up to 255).
fn is_ipv4_rest(rest: &str) -> bool {
    let mut parts = rest.splitn(4, '.');
    (0..3).all(|n| {
        let part = parts.next().unwrap_or("");
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        let whole = n < 2 && digits.len() == part.len() || n == 2;
        !digits.is_empty() && digits.len() <= 3 && digits.parse::<u16>().is_ok_and(|v| v <= 255) && whole
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn maps_only_ten_dot_addresses() {
        assert_eq!(super::to_loopback("ip 10.161.0.34, 10.79.5.185-a3a6"), "ip 127.161.0.34, 127.79.5.185-a3a6");
        assert_eq!(super::to_loopback("110.1.2.3 and 10.5 and v10.1.2.3"), "110.1.2.3 and 10.5 and v127.1.2.3");
    }
}
