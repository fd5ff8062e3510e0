/// Converts Celsius to Fahrenheit.
pub fn fahrenheit(celsius: f64) -> f64 {
    celsius * 9.0 / 5.0 + 32.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn boiling() {
        assert_eq!(super::fahrenheit(100.0), 212.0);
    }
}
