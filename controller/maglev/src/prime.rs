//! Primality, for checking table sizes.

/// Whether `n` is prime (trial division; table sizes are checked rarely).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d = 3u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::is_prime;

    #[test]
    fn known_primes_and_composites() {
        for p in [
            2, 3, 5, 13, 251, 16_381, 65_537, 131_071, 655_373, 16_777_213,
        ] {
            assert!(is_prime(p), "{p}");
        }
        for c in [0, 1, 4, 9, 65_536, 65_535, 655_371, 16_777_215] {
            assert!(!is_prime(c), "{c}");
        }
    }
}
