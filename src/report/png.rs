//! SVG to PNG with resvg, using the embedded DejaVu Sans so that text
//! renders the same on a machine without any system fonts.

use std::sync::Arc;

use resvg::{tiny_skia, usvg};

/// Pixels per SVG unit: PNGs at twice the SVG's size stay sharp on screens.
const SCALE: f32 = 2.0;

/// Renders SVG documents to PNG; holds the parsed font.
pub(crate) struct PngRenderer {
    options: usvg::Options<'static>,
}

impl PngRenderer {
    pub fn new() -> Self {
        let mut fonts = usvg::fontdb::Database::new();
        fonts.load_font_data(dejavu::sans::regular().to_vec());
        fonts.load_font_data(dejavu::sans::bold().to_vec());
        // Whatever family an SVG asks for, the embedded font answers.
        fonts.set_sans_serif_family("DejaVu Sans");
        let mut options = usvg::Options {
            font_family: "DejaVu Sans".into(),
            ..usvg::Options::default()
        };
        options.fontdb = Arc::new(fonts);
        PngRenderer { options }
    }

    pub fn render(&self, svg: &str) -> Result<Vec<u8>, String> {
        let tree = usvg::Tree::from_str(svg, &self.options)
            .map_err(|error| format!("the figure is not valid SVG: {error}"))?;
        let size = tree
            .size()
            .to_int_size()
            .scale_by(SCALE)
            .ok_or("the figure is empty")?;
        let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or("the figure is too large to render")?;
        resvg::render(
            &tree,
            tiny_skia::Transform::from_scale(SCALE, SCALE),
            &mut pixmap.as_mut(),
        );
        pixmap
            .encode_png()
            .map_err(|error| format!("failed to encode the png: {error}"))
    }
}
