//! node (work in progress).
