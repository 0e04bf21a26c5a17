//! What the fuzz targets share.

/// `data` decoded as the loaders decode a file; `None` when it is not
/// UTF-8, after checking that the error has a usable location.
pub fn text_of(data: &[u8]) -> Option<String> {
    match pipeline::limits::decode_text(data.to_vec()) {
        Ok(text) => Some(text),
        Err(position) => {
            assert!(position.line >= 1 && position.column >= 1);
            None
        }
    }
}
