//! ESP (RFC 4303) security associations and ESP-in-UDP (RFC 3948); built with the data-plane work.
