//! researcher (work in progress).
