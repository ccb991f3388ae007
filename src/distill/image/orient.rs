//! EXIF orientation applied to the pixels, so the output is upright and carries no tag.

use super::Pixels;

/// Returns the pixels as they should be seen (orientation 1..=8, EXIF 2.3 §4.6.4).
pub fn upright(p: Pixels, orientation: u8) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return p;
    }
    let (w, h, c) = (p.width as usize, p.height as usize, p.channels as usize);
    // 5..=8 swap the axes.
    let (ow, oh) = if orientation >= 5 { (h, w) } else { (w, h) };
    let mut out = vec![0u8; ow * oh * c];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (h - 1 - y, x),
                7 => (h - 1 - y, w - 1 - x),
                _ => (y, w - 1 - x), // 8
            };
            let src = (y * w + x) * c;
            let dst = (ny * ow + nx) * c;
            out[dst..dst + c].copy_from_slice(&p.data[src..src + c]);
        }
    }
    Pixels {
        width: ow as u32,
        height: oh as u32,
        channels: p.channels,
        data: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> Pixels {
        // 3x2, one channel: 1 2 3 / 4 5 6
        Pixels {
            width: 3,
            height: 2,
            channels: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        }
    }

    #[test]
    fn each_orientation_lands_upright() {
        let cases: [(u8, u32, &[u8]); 7] = [
            (2, 3, &[3, 2, 1, 6, 5, 4]),
            (3, 3, &[6, 5, 4, 3, 2, 1]),
            (4, 3, &[4, 5, 6, 1, 2, 3]),
            (5, 2, &[1, 4, 2, 5, 3, 6]),
            (6, 2, &[4, 1, 5, 2, 6, 3]),
            (7, 2, &[6, 3, 5, 2, 4, 1]),
            (8, 2, &[3, 6, 2, 5, 1, 4]),
        ];
        for (o, width, want) in cases {
            let p = upright(img(), o);
            assert_eq!(
                (p.width, p.data.as_slice()),
                (width, want),
                "orientation {o}"
            );
        }
        assert_eq!(upright(img(), 1).data, img().data);
    }
}
