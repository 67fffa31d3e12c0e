//! The server's HTTP behaviour over real sockets, with the scripted backend.

#[cfg(test)]
mod api {
    mod admin;
    mod admission;
    mod advisor;
    mod batches;
    pub mod common;
    mod context;
    mod errors;
    mod governance;
    mod limits;
    mod messages;
    mod models;
    mod server_tools;
    mod streaming;
    mod structure;
    mod thinking;
    mod tool_search;
    mod uploads;
}
