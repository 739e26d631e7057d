"""Next-item recommendation on public data under RecBole's sequential protocol (docs/data.md)."""
