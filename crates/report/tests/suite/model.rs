//! The dashboard data model on a workspace written by hand: filled below.
