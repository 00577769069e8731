# payledger, built from this repository: one static binary on a distroless
# base. docker-compose.yml runs it against PostgreSQL, NATS and KurrentDB.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/payledger ./cmd/payledger

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/payledger /usr/local/bin/payledger
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/payledger"]
CMD ["help"]
