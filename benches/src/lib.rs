pub use quarry_engine as engine;
