mod model;
mod report;
