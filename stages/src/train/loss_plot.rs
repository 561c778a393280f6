//! The loss curve as a PNG (training loss per step, validation loss where measured), written
//! beside the metrics as `loss.png` for the run report. Text is set in DejaVu Sans, embedded in
//! the binary, so the plot looks the same on a machine with no fonts installed.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::StepMetrics;

const SIZE: (u32, u32) = (900, 540);

fn font_ready() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font did not load".to_string())
        })
        .clone()
}

/// Renders `metrics` (at least one step) as a PNG file's bytes.
pub fn loss_png(metrics: &[StepMetrics]) -> Result<Vec<u8>, String> {
    font_ready()?;
    let train: Vec<(f64, f64)> = metrics
        .iter()
        .map(|m| (m.report.step as f64, m.report.loss))
        .filter(|(_, l)| l.is_finite())
        .collect();
    let validation: Vec<(f64, f64)> = metrics
        .iter()
        .filter_map(|m| m.validation_loss.map(|v| (m.report.step as f64, v)))
        .filter(|(_, l)| l.is_finite())
        .collect();
    if train.is_empty() {
        return Err("no finite loss to plot".into());
    }
    let losses = train.iter().chain(&validation).map(|(_, l)| *l);
    let (low, high) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let pad = ((high - low) * 0.05).max(0.01);
    let last_step = train.last().map_or(1.0, |(s, _)| *s).max(2.0);

    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("loss (nats per token)", ("sans-serif", 22))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(1.0..last_step, (low - pad)..(high + pad))
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
            .map_err(e)?
            .label("training")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        if !validation.is_empty() {
            chart
                .draw_series(LineSeries::new(validation.clone(), RED.stroke_width(2)))
                .map_err(e)?
                .label("validation")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
            chart
                .draw_series(validation.into_iter().map(|p| Circle::new(p, 4, RED.filled())))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    encode_png(&rgb)
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, String> {
    let image = image::RgbImage::from_raw(SIZE.0, SIZE.1, rgb.to_vec())
        .ok_or_else(|| "the plot buffer has the wrong size".to_string())?;
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageOutputFormat::Png)
        .map_err(|e| format!("cannot encode the loss plot: {e}"))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use llamaflow_model::train::StepReport;

    fn step(step: u64, loss: f64, validation: Option<f64>) -> StepMetrics {
        StepMetrics {
            report: StepReport {
                step,
                loss,
                lr: 1e-3,
                grad_norm: 1.0,
                tokens: 256,
            },
            tokens_per_second: 1.0,
            mfu: None,
            validation_loss: validation,
        }
    }

    #[test]
    fn a_curve_becomes_a_png_that_decodes() {
        let metrics: Vec<StepMetrics> = (1..=50)
            .map(|s| step(s, 10.0 - s as f64 * 0.1, (s % 10 == 0).then(|| 10.2 - s as f64 * 0.1)))
            .collect();
        let png = loss_png(&metrics).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), SIZE);
        // Something besides the white background was drawn.
        assert!(
            decoded.to_rgb8().pixels().any(|p| p.0 == [0, 0, 255]),
            "the blue training line is there"
        );
    }

    #[test]
    fn no_finite_loss_is_an_error_not_a_panic() {
        assert!(loss_png(&[step(1, f64::NAN, None)]).is_err());
        assert!(loss_png(&[]).is_err());
    }
}
