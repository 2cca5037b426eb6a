//! CRC-32C (Castagnoli), the checksum guarding every record on disk.
//!
//! Reflected polynomial 0x82F63B78, initial value and final xor all ones, the
//! same parameters as iSCSI, ext4 and SSE4.2's `crc32` instruction, so values
//! can be checked with common tools. One table, a byte at a time: records are
//! short, and reading them is not where a start spends its time.

const POLYNOMIAL: u32 = 0x82F6_3B78;

/// The CRC contribution of each byte value, built at compile time.
static TABLE: [u32; 256] = build_table();

// `byte` is below 256, so `byte as u32` keeps it whole (`u32::from` is not
// available in a const fn).
#[allow(clippy::cast_possible_truncation)]
const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

/// The CRC-32C of `data`.
pub(super) fn checksum(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, &byte| {
        (crc >> 8) ^ TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize]
    })
}

#[cfg(test)]
mod tests {
    use super::checksum;
    use proptest::prelude::*;

    /// Bit-at-a-time reference straight from the definition, to check the
    /// table-driven version against.
    fn bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn standard_check_value() {
        assert_eq!(checksum(b"123456789"), 0xE306_9283);
        assert_eq!(checksum(b""), 0);
    }

    #[test]
    fn iscsi_vectors_from_rfc_3720() {
        assert_eq!(checksum(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(checksum(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(checksum(&ascending), 0x46DD_794E);
        let descending: Vec<u8> = (0..32).rev().collect();
        assert_eq!(checksum(&descending), 0x113F_DB5C);
        let read_command_pdu: [u8; 48] = [
            0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14,
            0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(checksum(&read_command_pdu), 0xD996_3A56);
    }

    proptest! {
        #[test]
        fn table_matches_bitwise(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(checksum(&data), bitwise(&data));
        }
    }
}
