//! The STATUS field: the status codes, each with its number and name.

use std::fmt;
use std::str::FromStr;

use crate::FrameError;
use crate::error::quote;

/// A status code. On the wire it is written as its number, e.g. `404`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Status {
    /// 200: success.
    Ok,
    /// 400: malformed frame, invalid username, or request before registration.
    BadRequest,
    /// 401 (v2): the server password is missing or wrong.
    Unauthorized,
    /// 403: SENDER_ID names another peer.
    Forbidden,
    /// 404: unknown peer id.
    NotFound,
    /// 405: unknown action, or a frame type the server does not take.
    MethodNotAllowed,
    /// 408: registration or health check not answered in time.
    RequestTimeout,
    /// 413: frame over the maximum length.
    PayloadTooLarge,
    /// 429: peer over its message rate.
    TooManyRequests,
    /// 502: internal failure.
    BadGateway,
    /// 503: server full or shutting down.
    ServiceUnavailable,
}

impl Status {
    /// Every status, in ascending order of code.
    pub const ALL: [Status; 11] = [
        Status::Ok,
        Status::BadRequest,
        Status::Unauthorized,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::PayloadTooLarge,
        Status::TooManyRequests,
        Status::BadGateway,
        Status::ServiceUnavailable,
    ];

    /// The numeric code, e.g. `404`.
    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::TooManyRequests => 429,
            Status::BadGateway => 502,
            Status::ServiceUnavailable => 503,
        }
    }

    /// The wire spelling: the code as decimal digits, e.g. `"404"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "200",
            Status::BadRequest => "400",
            Status::Unauthorized => "401",
            Status::Forbidden => "403",
            Status::NotFound => "404",
            Status::MethodNotAllowed => "405",
            Status::RequestTimeout => "408",
            Status::PayloadTooLarge => "413",
            Status::TooManyRequests => "429",
            Status::BadGateway => "502",
            Status::ServiceUnavailable => "503",
        }
    }

    /// The name, e.g. `"NOT_FOUND"`.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "BAD_REQUEST",
            Status::Unauthorized => "UNAUTHORIZED",
            Status::Forbidden => "FORBIDDEN",
            Status::NotFound => "NOT_FOUND",
            Status::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Status::RequestTimeout => "REQUEST_TIMEOUT",
            Status::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Status::TooManyRequests => "TOO_MANY_REQUESTS",
            Status::BadGateway => "BAD_GATEWAY",
            Status::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    /// The status with this numeric code, if it is one of the known ones.
    pub const fn from_code(code: u16) -> Option<Status> {
        match code {
            200 => Some(Status::Ok),
            400 => Some(Status::BadRequest),
            401 => Some(Status::Unauthorized),
            403 => Some(Status::Forbidden),
            404 => Some(Status::NotFound),
            405 => Some(Status::MethodNotAllowed),
            408 => Some(Status::RequestTimeout),
            413 => Some(Status::PayloadTooLarge),
            429 => Some(Status::TooManyRequests),
            502 => Some(Status::BadGateway),
            503 => Some(Status::ServiceUnavailable),
            _ => None,
        }
    }

    /// The status with this name, e.g. `"NOT_FOUND"`.
    pub fn from_name(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Writes the wire form (the number), e.g. `404`. Use [`Status::name`] for the name.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    /// The status with this exact wire spelling (three digits), as bytes.
    pub(crate) fn from_wire(s: &[u8]) -> Option<Status> {
        match s {
            b"200" => Some(Status::Ok),
            b"400" => Some(Status::BadRequest),
            b"401" => Some(Status::Unauthorized),
            b"403" => Some(Status::Forbidden),
            b"404" => Some(Status::NotFound),
            b"405" => Some(Status::MethodNotAllowed),
            b"408" => Some(Status::RequestTimeout),
            b"413" => Some(Status::PayloadTooLarge),
            b"429" => Some(Status::TooManyRequests),
            b"502" => Some(Status::BadGateway),
            b"503" => Some(Status::ServiceUnavailable),
            _ => None,
        }
    }
}

impl FromStr for Status {
    type Err = FrameError;

    /// Parses the wire form: exactly the three digits of one of the codes.
    fn from_str(s: &str) -> Result<Self, FrameError> {
        Status::from_wire(s.as_bytes()).ok_or_else(|| FrameError::UnknownStatus(quote(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_wire_forms_agree() {
        for status in Status::ALL {
            assert_eq!(Status::from_code(status.code()), Some(status));
            assert_eq!(Status::from_name(status.name()), Some(status));
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
            assert_eq!(status.as_str(), status.code().to_string());
            assert_eq!(status.to_string(), status.as_str());
        }
    }

    #[test]
    fn the_table_of_the_contract() {
        let table = [
            (200, "OK"),
            (400, "BAD_REQUEST"),
            (401, "UNAUTHORIZED"),
            (403, "FORBIDDEN"),
            (404, "NOT_FOUND"),
            (405, "METHOD_NOT_ALLOWED"),
            (408, "REQUEST_TIMEOUT"),
            (413, "PAYLOAD_TOO_LARGE"),
            (429, "TOO_MANY_REQUESTS"),
            (502, "BAD_GATEWAY"),
            (503, "SERVICE_UNAVAILABLE"),
        ];
        for (code, name) in table {
            let status = Status::from_code(code).expect("a code of the contract");
            assert_eq!(status.name(), name);
        }
    }

    #[test]
    fn unknown_codes_are_refused() {
        for s in [
            "",
            "201",
            "0200",
            "200 ",
            "OK",
            "-200",
            "99999999999999999999",
        ] {
            assert!(s.parse::<Status>().is_err(), "{s:?}");
        }
        assert_eq!(Status::from_code(418), None);
    }
}
