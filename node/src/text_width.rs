//! Table columns padded by display width: a Chinese character takes two columns of a
//! terminal, so `format!("{:<16}")` — which counts characters — misaligns columns of names
//! such as 北京市 against ASCII ones. `unicode-width` (already in the build through the
//! progress bars) gives each character's width.

use unicode_width::UnicodeWidthStr;

/// `text` followed by spaces up to `width` display columns (unchanged if wider).
pub fn pad(text: &str, width: usize) -> String {
    let w = text.width();
    let mut out = String::with_capacity(text.len() + width.saturating_sub(w));
    out.push_str(text);
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(w)));
    out
}

#[cfg(test)]
mod tests {
    use super::pad;
    use unicode_width::UnicodeWidthStr;

    #[test]
    fn chinese_names_take_two_columns_each() {
        assert_eq!(pad("北京市", 10), "北京市    ");
        assert_eq!(pad("北京市", 10).width(), pad("ab", 10).width());
        assert_eq!(pad("中华人民共和国", 4), "中华人民共和国");
    }
}
