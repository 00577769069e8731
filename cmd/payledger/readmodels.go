package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/payledger/payledger/projections"
)

// readModelsFlagUsage is the help text of --read-models.
const readModelsFlagUsage = "the read models (balances, statements, cases): postgres://... (schema from search_path, default " +
	projections.DefaultPostgresSchema + ") or sqlite:PATH (env PAYLEDGER_READ_MODELS); default readmodels.db in --data"

// readModelsEnv is the environment fallback of --read-models.
const readModelsEnv = "PAYLEDGER_READ_MODELS"

// addReadModelsFlag registers --read-models, which falls back to
// PAYLEDGER_READ_MODELS.
func addReadModelsFlag(fs *flag.FlagSet) *string {
	return fs.String("read-models", os.Getenv(readModelsEnv), readModelsFlagUsage)
}

// parseReadModels reads a --read-models value into what
// projections.OpenURL takes; empty means the data directory's
// readmodels.db.
func parseReadModels(v, dataDir string) (string, error) {
	switch {
	case v == "":
		return "sqlite:" + filepath.Join(dataDir, "readmodels.db"), nil
	case strings.HasPrefix(v, "sqlite:"):
		if strings.TrimPrefix(v, "sqlite:") == "" {
			return "", errors.New("--read-models sqlite:PATH needs the path of the read models' file")
		}
		return v, nil
	case projections.IsPostgresURL(v):
		return v, nil
	}
	return "", fmt.Errorf("--read-models %q: want sqlite:PATH or a postgres:// URL", redactStore(v))
}

// openReadModels opens the read models that v (--read-models) names, as
// their only projector.
func openReadModels(ctx context.Context, v, dataDir string) (*projections.ReadModels, error) {
	spec, err := parseReadModels(v, dataDir)
	if err != nil {
		return nil, err
	}
	rm, err := projections.OpenURL(ctx, spec)
	if errors.Is(err, projections.ErrLocked) {
		return nil, fmt.Errorf("%w (one projector per read-model schema: stop the server that uses them, or give this one another schema)", err)
	}
	return rm, err
}

// openReadModelsForReading opens them beside a server that projects into
// them: PostgreSQL ones without the projector's lock, a SQLite file that
// must exist (a typo must not create an empty one and compare with it).
func openReadModelsForReading(ctx context.Context, v, dataDir string) (*projections.ReadModels, error) {
	spec, err := parseReadModels(v, dataDir)
	if err != nil {
		return nil, err
	}
	if projections.IsPostgresURL(spec) {
		return projections.OpenPostgresReader(ctx, spec, "")
	}
	path := strings.TrimPrefix(spec, "sqlite:")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no read models at %s: %w", path, err)
	}
	return projections.Open(path)
}
