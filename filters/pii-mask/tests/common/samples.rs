// One sample value per built-in entity type. Shared by the stream masker's
// unit tests (src/stream.rs) and the harness tests (tests/harness.rs), which
// both check that each is caught at every split; included with `include!`.

/// One sample per entity type (each must be caught at any split).
#[allow(dead_code)]
pub(crate) const SAMPLES: &[(&str, &str)] = &[
    ("EMAIL_ADDRESS", "john.doe@example.com"),
    ("PHONE_NUMBER", "+1 415 555 0132"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("US_SSN", "123-45-6789"),
    ("IP_ADDRESS", "192.168.10.20"),
    ("IP_ADDRESS", "2001:db8::8a2e:370:7334"),
    ("IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
    ("OPENAI_API_KEY", "sk-proj-Ab3dEfGh1jKlMnOpQrStUvWxYz012345"),
    ("AWS_ACCESS_KEY", "AKIAIOSFODNN7EXAMPLE"),
    ("GITHUB_TOKEN", "ghp_aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3aB3"),
    ("SLACK_TOKEN", "xoxb-123456789012-1234567890123-AbCdEfGh"),
    ("JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU"),
    ("PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"),
];
