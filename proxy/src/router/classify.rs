//! The hot-path statement classifier: see `classify`.
