//! USB (UVC) cameras through nokhwa's V4L2 input (agent feature `usb-camera`, off by default: the
//! V4L2 bindings need libclang to build).
//!
//! A camera is named by its stable `/dev/v4l/by-id/...` link, resolved to `/dev/videoN` at every
//! capture, so it is found again after a replug into another port. Each capture opens the camera,
//! asks for MJPEG (the largest size, or the one nearest `width`×`height`), lets a few frames pass
//! for the exposure to settle, and keeps one frame's bytes as the camera made them — no decoding,
//! no re-encoding. A camera without MJPEG is read as YUYV and encoded to JPEG here. nokhwa runs on
//! a blocking thread, and a panic inside it is caught and reported as a camera error.

use super::{CameraError, Capture, FrameSource};
use nokhwa::Camera;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use std::path::{Path, PathBuf};

/// Frames dropped after the stream opens, while exposure and white balance settle.
const WARMUP_FRAMES: usize = 5;
const MJPEG_OR_YUYV: &[FrameFormat] = &[FrameFormat::MJPEG, FrameFormat::YUYV];

pub struct UsbSource {
    device: PathBuf,
    wish: Option<(u32, u32)>,
}

impl UsbSource {
    pub fn new(device: PathBuf, width: Option<u16>, height: Option<u16>) -> UsbSource {
        let wish = match (width, height) {
            (Some(w), Some(h)) => Some((u32::from(w), u32::from(h))),
            _ => None,
        };
        UsbSource { device, wish }
    }
}

/// `/dev/v4l/by-id/usb-...-video-index0` → `/dev/video2` → 2.
pub fn video_index(device: &Path) -> Result<u32, CameraError> {
    let real = std::fs::canonicalize(device).map_err(|e| {
        CameraError::Device(format!(
            "{}: {e} (is the camera plugged in? `ls -l /dev/v4l/by-id/` lists the cameras)",
            device.display()
        ))
    })?;
    real.to_str()
        .and_then(|p| p.strip_prefix("/dev/video"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            CameraError::Device(format!(
                "{} leads to {}, not a /dev/videoN device",
                device.display(),
                real.display()
            ))
        })
}

/// The format to ask for: MJPEG if the camera has it, else YUYV; the size nearest `wish`, else
/// the largest; the highest frame rate of that size.
pub fn choose_format(formats: &[CameraFormat], wish: Option<(u32, u32)>) -> Option<CameraFormat> {
    let pick = |kind: FrameFormat| {
        formats
            .iter()
            .filter(|f| f.format() == kind)
            .max_by_key(|f| {
                let (w, h) = (f.width(), f.height());
                let nearness = match wish {
                    Some((ww, wh)) => {
                        u64::MAX - (u64::from(w.abs_diff(ww)) + u64::from(h.abs_diff(wh)))
                    }
                    None => u64::from(w) * u64::from(h),
                };
                (nearness, f.frame_rate())
            })
            .copied()
    };
    pick(FrameFormat::MJPEG).or_else(|| pick(FrameFormat::YUYV))
}

fn capture_blocking(device: &Path, wish: Option<(u32, u32)>) -> Result<Vec<u8>, CameraError> {
    let nokhwa = |what: &str, e: nokhwa::NokhwaError| {
        CameraError::Device(format!("{} ({what}): {e}", device.display()))
    };
    let index = CameraIndex::Index(video_index(device)?);
    let mut camera = Camera::with_backend(
        index,
        RequestedFormat::with_formats(
            RequestedFormatType::AbsoluteHighestResolution,
            MJPEG_OR_YUYV,
        ),
        ApiBackend::Video4Linux,
    )
    .map_err(|e| nokhwa("opening", e))?;
    let formats = camera
        .compatible_camera_formats()
        .map_err(|e| nokhwa("listing formats", e))?;
    let format = choose_format(&formats, wish).ok_or_else(|| {
        CameraError::Device(format!(
            "{} offers neither MJPEG nor YUYV",
            device.display()
        ))
    })?;
    camera
        .set_camera_requset(RequestedFormat::with_formats(
            RequestedFormatType::Exact(format),
            MJPEG_OR_YUYV,
        ))
        .map_err(|e| nokhwa("choosing the format", e))?;
    camera.open_stream().map_err(|e| nokhwa("starting", e))?;
    let mut frame = camera.frame().map_err(|e| nokhwa("reading a frame", e));
    for _ in 0..WARMUP_FRAMES {
        if frame.is_err() {
            break;
        }
        frame = camera.frame().map_err(|e| nokhwa("reading a frame", e));
    }
    let _ = camera.stop_stream();
    let frame = frame?;
    match frame.source_frame_format() {
        // As the camera made it. Some cameras send MJPEG without the Huffman tables (DHT); most
        // decoders supply the standard ones, which is what those cameras expect.
        FrameFormat::MJPEG => Ok(frame.buffer().to_vec()),
        FrameFormat::YUYV => {
            let resolution = frame.resolution();
            let rgb = nokhwa::utils::yuyv422_to_rgb(frame.buffer(), false)
                .map_err(|e| nokhwa("converting YUYV", e))?;
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
                .encode(
                    &rgb,
                    resolution.width(),
                    resolution.height(),
                    image::ExtendedColorType::Rgb8,
                )
                .map_err(|e| CameraError::Device(format!("encoding JPEG: {e}")))?;
            Ok(jpeg)
        }
        other => Err(CameraError::Device(format!(
            "{} sent {other} frames, not MJPEG or YUYV",
            device.display()
        ))),
    }
}

impl FrameSource for UsbSource {
    fn capture(&mut self) -> Capture<'_> {
        let device = self.device.clone();
        let wish = self.wish;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                std::panic::catch_unwind(|| capture_blocking(&device, wish)).unwrap_or_else(|_| {
                    Err(CameraError::Device(format!(
                        "{}: the camera library failed (panicked); the next capture tries again",
                        device.display()
                    )))
                })
            })
            .await
            .map_err(|e| CameraError::Device(e.to_string()))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokhwa::utils::Resolution;

    fn f(w: u32, h: u32, kind: FrameFormat, fps: u32) -> CameraFormat {
        CameraFormat::new(Resolution::new(w, h), kind, fps)
    }

    #[test]
    fn mjpeg_first_then_the_size_wished_or_the_largest() {
        let formats = [
            f(640, 480, FrameFormat::YUYV, 30),
            f(1920, 1080, FrameFormat::YUYV, 5),
            f(1280, 720, FrameFormat::MJPEG, 30),
            f(1920, 1080, FrameFormat::MJPEG, 15),
            f(1920, 1080, FrameFormat::MJPEG, 30),
        ];
        assert_eq!(
            choose_format(&formats, None),
            Some(f(1920, 1080, FrameFormat::MJPEG, 30))
        );
        assert_eq!(
            choose_format(&formats, Some((1280, 700))),
            Some(f(1280, 720, FrameFormat::MJPEG, 30))
        );
        assert_eq!(
            choose_format(&formats[..2], None),
            Some(f(1920, 1080, FrameFormat::YUYV, 5)),
            "YUYV only when there is no MJPEG"
        );
        assert_eq!(choose_format(&[], None), None);
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let e = video_index(Path::new("/dev/v4l/by-id/usb-nothing-video-index0")).unwrap_err();
        assert!(e.to_string().contains("plugged in"), "{e}");
    }
}
