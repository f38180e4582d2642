//! Read models (issue 3).
