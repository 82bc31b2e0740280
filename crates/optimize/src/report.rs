//! Report: written by a helper.
