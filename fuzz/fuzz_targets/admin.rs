#![no_main]

use libfuzzer_sys::fuzz_target;
use rwproxy_admin::{like, parse};

// The admin console's parser and its LIKE matcher take whatever an admin client sends (the
// console decodes it as the proxy does, lossily). Neither may panic, and LIKE must stay
// linear in pattern × text whatever the pattern (it once took minutes on `%%%…!`).
fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let _ = parse(&sql);
    if let Some(split) = data.iter().position(|&b| b == 0) {
        let pattern = String::from_utf8_lossy(&data[..split]);
        let text = String::from_utf8_lossy(&data[split + 1..]);
        let _ = like(&pattern, &text);
    }
});
